"""Strict semantic versions (https://semver.org), as Go's semver package parses them."""

import re

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?")


def is_semver(text: str) -> bool:
    return bool(_SEMVER.fullmatch(text))
