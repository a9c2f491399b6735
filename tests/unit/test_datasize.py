"""Byte sizes in the forms Go's datasize package reads and writes."""

import pytest

from wireleap_relay import datasize


@pytest.mark.parametrize("text, size", [
    ("0", 0), ("0B", 0), ("7", 7), ("7b", 7), ("7 byte", 7), ("1K", 1024), ("1kb", 1024),
    ("1kB", 1024), ("1 kilo", 1024), ("2 kilobytes", 2048), ("3m", 3 << 20),
    ("3 MB", 3 << 20), ("3  megabytes", 3 << 20), ("4GB", 4 << 30), ("4 giga", 4 << 30),
    ("5TB", 5 << 40), ("5 terabyte", 5 << 40), ("6PB", 6 << 50), ("7EB", 7 << 60),
    ("7e", 7 << 60), ("10MB ", 10 << 20), ("15EB", 15 << 60),
])
def test_parse(text, size):
    assert datasize.parse(text) == size


@pytest.mark.parametrize("text", [
    "", " 1MB", "MB", "1.5GB", "-1", "+1", "1 XB", "1 kib", "1 exa", "1MB!", "1,000",
    "16EB", "18446744073709551616",
])
def test_parse_refuses(text):
    with pytest.raises(datasize.SizeError):
        datasize.parse(text)


def test_largest_value_fits_in_64_bits():
    assert datasize.parse("18446744073709551615") == datasize.MAX


@pytest.mark.parametrize("text", ["1Kb", "1Mb", "1 Gb", "1Tb", "1Pb", "1Eb"])
def test_bits_are_refused_by_name(text):
    with pytest.raises(datasize.SizeError, match="means bits"):
        datasize.parse(text)


@pytest.mark.parametrize("size, text", [
    (0, "0B"), (1, "1B"), (1023, "1023B"), (1024, "1KB"), (1536, "1536B"),
    (1536 << 10, "1536KB"), (500 << 30, "500GB"), (2 << 40, "2TB"), (3 << 50, "3PB"),
    (15 << 60, "15EB"), (datasize.MAX, "18446744073709551615B"),
])
def test_format(size, text):
    assert datasize.format(size) == text
    assert datasize.parse(text) == size
