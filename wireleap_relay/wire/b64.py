"""Base64 as Wireleap writes it: URL-safe alphabet, no '=' padding (Go's RawURLEncoding)."""

import base64
import binascii
import re

_RAW_URL = re.compile(r"[A-Za-z0-9_-]*")


class B64Error(ValueError):
    """Text that is not strict raw-URL base64."""


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """Decode strictly: padding, '+', '/' or any other foreign character is an error.

    The message names the offending input byte the way Go's decoder does, so operators see
    the same text from both relays (`illegal base64 data at input byte 43`).
    """
    # Go's decoder silently skips CR and LF inside base64 text; do the same.
    cleaned = text.replace("\r", "").replace("\n", "")
    match = _RAW_URL.match(cleaned)
    if match.end() != len(cleaned):
        raise B64Error(f"illegal base64 data at input byte {match.end()}")
    if len(cleaned) % 4 == 1:
        raise B64Error(f"illegal base64 data at input byte {len(cleaned) - 1}")
    try:
        return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except binascii.Error as exc:  # pragma: no cover - the regex already rules this out
        raise B64Error(str(exc)) from exc
