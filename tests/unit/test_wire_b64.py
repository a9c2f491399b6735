"""Strict raw-URL base64 with Go's error texts (wire.md §2.2)."""

import base64

import pytest

from wireleap_relay.wire import b64

KEY = bytes(range(32))
KEY_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"


def test_encode_is_url_safe_unpadded():
    assert b64.encode(KEY) == KEY_B64
    assert b64.encode(b"\xfb\xff") == "-_8"
    assert b64.encode(b"") == ""
    assert b64.encode(b"a") == "YQ"


@pytest.mark.parametrize("raw", [b"", b"a", b"ab", b"abc", b"abcd", KEY, bytes(range(256))])
def test_round_trip(raw):
    assert b64.decode(b64.encode(raw)) == raw


def test_decode_url_alphabet():
    assert b64.decode("-_8") == b"\xfb\xff"


@pytest.mark.parametrize("text,index", [
    (KEY_B64 + "=", 43),   # a padded 32-byte key
    ("YQ==", 2),
    ("+_8", 0),
    ("-/8", 1),
    ("ab c", 2),
    ("abc.", 3),
    ("ab\u00e9c", 2),
    ("abcde", 4),          # one dangling character
    ("a", 0),
])
def test_decode_rejects_with_go_text(text, index):
    with pytest.raises(b64.B64Error) as info:
        b64.decode(text)
    assert str(info.value) == f"illegal base64 data at input byte {index}"


def test_error_is_value_error():
    assert issubclass(b64.B64Error, ValueError)


def test_decode_skips_newlines_like_go():
    assert b64.decode(KEY_B64[:20] + "\r\n" + KEY_B64[20:] + "\n") == KEY


def test_std_alphabet_output_is_rejected():
    text = base64.b64encode(b"\xfb\xff\xfe").decode()  # "+//+"
    with pytest.raises(b64.B64Error):
        b64.decode(text)
