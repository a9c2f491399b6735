"""Byte sizes as config.json writes them: "500GB", "10 MB", "1536KB" (control.md §1.1,
operations.md §5.6).

The Go relay reads them with the datasize package: digits, optional spaces, an optional
case-insensitive unit, every unit a power of 1024. "Kb", "Mb", ... are refused as bits, no
decimals, and the value must fit in 64 bits. Written back as the largest unit that divides
the value exactly: "2TB", "1536KB", "0B".
"""

MAX = 2**64 - 1

# Unit names in lower case, and the power of 1024 each stands for.
_UNITS = {name: power for power, names in enumerate((
    ("", "b", "byte"),
    ("k", "kb", "kilo", "kilobyte", "kilobytes"),
    ("m", "mb", "mega", "megabyte", "megabytes"),
    ("g", "gb", "giga", "gigabyte", "gigabytes"),
    ("t", "tb", "tera", "terabyte", "terabytes"),
    ("p", "pb", "peta", "petabyte", "petabytes"),
    ("e", "eb"),
)) for name in names}
_BITS = ("Kb", "Mb", "Gb", "Tb", "Pb", "Eb")
_WRITTEN = ("B", "KB", "MB", "GB", "TB", "PB", "EB")
HELP = "a whole number of bytes with an optional unit (B, KB, MB, GB, TB, PB, EB)"


class SizeError(ValueError):
    pass


def parse(text: str) -> int:
    """The size in bytes; SizeError says what is wrong."""
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits == 0:
        raise SizeError(f"must be {HELP}, got {text!r}")
    unit = text[digits:].strip(" \t\n\r\v\f")
    if unit in _BITS:
        raise SizeError(f"{unit!r} means bits; write {unit[0]}B for bytes, got {text!r}")
    power = _UNITS.get(unit.lower())
    if power is None:
        raise SizeError(f"must be {HELP}, got {text!r}")
    value = int(text[:digits]) * 1024**power
    if value > MAX:
        raise SizeError(f"is larger than 16EB, got {text!r}")
    return value


def format(size: int) -> str:  # noqa: A001 - the module's verb, as duration.format
    """The form Go writes: the largest unit that divides `size` exactly."""
    if size == 0:
        return "0B"
    power = len(_WRITTEN) - 1
    while size % 1024**power:
        power -= 1
    return f"{size // 1024**power}{_WRITTEN[power]}"
