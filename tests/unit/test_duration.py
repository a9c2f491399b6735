"""Durations (operations.md §5.5): accept what the Go relay's scanner and Go's parser read
identically, reject the inputs the scanner mangles, format like Go's Duration.String()."""

import pytest

from wireleap_relay import duration
from wireleap_relay.duration import DAY, HOUR, MINUTE, SECOND

VALID = [
    ("5m0s", 5 * MINUTE),
    ("5m", 5 * MINUTE),
    (" 5m", 5 * MINUTE),
    ("5m ", 5 * MINUTE),
    ("90s", 90 * SECOND),
    ("1m30s", 90 * SECOND),
    ("1.5h", HOUR + 30 * MINUTE),
    ("1.5m", 90 * SECOND),
    ("1.5s", 1500 * 1_000_000),
    ("2d", 48 * HOUR),
    ("1d12h", 36 * HOUR),
    ("30d", 720 * HOUR),
    ("0s", 0),
    ("0m", 0),
    ("1h30m", 90 * MINUTE),
    ("1h0m0s", HOUR),
    ("720h0m0s", 720 * HOUR),
    ("01m", MINUTE),
    ("2562047h", 2562047 * HOUR),
]


@pytest.mark.parametrize("text,expected", VALID)
def test_parse_valid(text, expected):
    assert duration.parse(text) == expected


INVALID = [
    # (input, a fragment the message must contain)
    ("300ms", "unknown unit 'ms'"),
    ("1ms", "sub-second units are not supported"),
    ("500us", "unknown unit 'us'"),
    ("1µs", "unknown unit 'µs'"),
    ("10ns", "unknown unit 'ns'"),
    ("-1h", "signs are not allowed"),
    ("+1h", "signs are not allowed"),
    ("10", "expected a number and a unit"),
    ("0", "expected a number and a unit"),
    ("abc", "expected a number and a unit"),
    ("", "empty duration"),
    ("   ", "empty duration"),
    ("5 m", "expected a number and a unit"),
    ("1h 30m", "expected a number and a unit"),
    ("1.5d", "fractional days are not supported"),
    (".5h", "expected a number and a unit"),
    ("1.h", "expected a number and a unit"),
    ("1hm", "unknown unit 'hm'"),
    ("10h5", "expected a number and a unit"),
    ("5M", "unknown unit 'M'"),
    ("1e3s", "unknown unit 'e'"),
    ("2562048h", "longer than Go's maximum"),
    ("106752d", "longer than Go's maximum"),
]


@pytest.mark.parametrize("text,fragment", INVALID)
def test_parse_invalid(text, fragment):
    with pytest.raises(duration.DurationError) as info:
        duration.parse(text)
    assert fragment in str(info.value)
    if text.strip():
        # The message quotes what the operator wrote.
        assert repr(text) in str(info.value)


def test_error_is_a_value_error():
    assert issubclass(duration.DurationError, ValueError)


@pytest.mark.parametrize("value", [5, 5.0, None, True, ["5m"]])
def test_parse_non_string(value):
    with pytest.raises(duration.DurationError) as info:
        duration.parse(value)
    assert str(info.value) == f'expected a duration string like "5m0s", got {value!r}'


def test_unknown_unit_hint_differs_for_non_sub_second():
    with pytest.raises(duration.DurationError) as info:
        duration.parse("5x")
    assert str(info.value) == "invalid duration '5x': unknown unit 'x' (use s, m, h or d)"


def test_exact_messages():
    cases = {
        "300ms": "invalid duration '300ms': unknown unit 'ms' (use s, m, h or d; "
                 "sub-second units are not supported)",
        "-1h": "invalid duration '-1h': signs are not allowed",
        "10": "invalid duration '10': expected a number and a unit (h, m, s or d) at '10'",
        "1.5d": "invalid duration '1.5d': fractional days are not supported, use hours",
        "": 'empty duration; write it like "5m0s" or "0s"',
    }
    for text, message in cases.items():
        with pytest.raises(duration.DurationError) as info:
            duration.parse(text)
        assert str(info.value) == message


FORMAT = [
    (5 * MINUTE, "5m0s"),
    (5 * SECOND, "5s"),
    (HOUR, "1h0m0s"),
    (720 * HOUR, "720h0m0s"),
    (0, "0s"),
    (90 * SECOND, "1m30s"),
    (1500 * 1_000_000, "1.5s"),
    (300 * 1_000_000, "300ms"),
    (1_500_000, "1.5ms"),
    (1500, "1.5\u00b5s"),  # Go writes U+00B5 MICRO SIGN
    (1, "1ns"),
    (DAY, "24h0m0s"),
    (HOUR + 30 * MINUTE, "1h30m0s"),
    (HOUR + 1, "1h0m0.000000001s"),
    (-5 * SECOND, "-5s"),
    (-300 * 1_000_000, "-300ms"),
    (2**63 - 1, "2562047h47m16.854775807s"),
]


@pytest.mark.parametrize("ns,text", FORMAT)
def test_format_matches_go(ns, text):
    assert duration.format(ns) == text


@pytest.mark.parametrize("text", ["5m0s", "5s", "1h0m0s", "720h0m0s", "0s", "1m30s", "1.5s"])
def test_canonical_form_round_trips(text):
    assert duration.format(duration.parse(text)) == text


def test_seconds():
    assert duration.seconds(1500 * 1_000_000) == 1.5
    assert duration.seconds(0) == 0.0
