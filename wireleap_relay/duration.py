"""Go-style durations as config.json writes them: "5m0s", "1h30m", "1.5h", plus "2d".

The Go relay runs durations through a lossy pre-scanner (operations.md §5.5) that turns
"300ms" into 300 minutes and "-1h" into +1h. We accept exactly the inputs on which that
scanner and Go's parser agree and reject the rest with a message, never a reinterpretation.
"""

import re

NANOSECOND = 1
SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
MAX = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds

_UNITS = {"h": HOUR, "m": MINUTE, "s": SECOND, "d": DAY}
_TERM = re.compile(r"(\d+)(?:\.(\d+))?([a-zA-Zµ]+)")


class DurationError(ValueError):
    pass


def parse(text: str) -> int:
    """Return the duration in nanoseconds or raise DurationError."""
    if not isinstance(text, str):
        raise DurationError(f"expected a duration string like \"5m0s\", got {text!r}")
    s = text.strip()
    if not s:
        raise DurationError("empty duration; write it like \"5m0s\" or \"0s\"")
    if s[0] in "+-":
        raise DurationError(f"invalid duration {text!r}: signs are not allowed")
    total, pos = 0, 0
    while pos < len(s):
        m = _TERM.match(s, pos)
        if not m:
            raise DurationError(f"invalid duration {text!r}: expected a number and a unit "
                                "(h, m, s or d) at {!r}".format(s[pos:]))
        whole, frac, unit = m.groups()
        if unit not in _UNITS:
            hint = " (use s, m, h or d; sub-second units are not supported)" \
                if unit in ("ms", "us", "µs", "ns") else " (use s, m, h or d)"
            raise DurationError(f"invalid duration {text!r}: unknown unit {unit!r}{hint}")
        if frac and unit == "d":
            raise DurationError(f"invalid duration {text!r}: fractional days are not "
                                "supported, use hours")
        scale = _UNITS[unit]
        total += int(whole) * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        pos = m.end()
    if total > MAX:
        raise DurationError(f"invalid duration {text!r}: longer than Go's maximum "
                            "2562047h47m16.854775807s")
    return total


def format(ns: int) -> str:  # noqa: A001 - mirrors Go's Duration.String
    """Go's canonical Duration.String(): 5m0s, 1h0m0s, 1m30s, 1.5s, 0s, 300ms."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < SECOND:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, HOUR)
    minutes, rest = divmod(rest, MINUTE)
    out = _decimal(rest, SECOND) + "s"
    if hours or minutes:
        out = f"{minutes}m" + out
    if hours:
        out = f"{hours}h" + out
    return sign + out


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


def seconds(ns: int) -> float:
    return ns / SECOND
