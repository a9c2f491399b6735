"""Strict semantic versions (https://semver.org), as Go's semver package parses and orders
them."""

import re

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?")


def is_semver(text: str) -> bool:
    return bool(_SEMVER.fullmatch(text))


def precedence(text: str) -> tuple:
    """A sort key in semver precedence: `0.7.0-5-gabc1234` (a pre-release, which is what a
    build past a tag looks like) sorts before `0.7.0`; build metadata is ignored.
    Raises ValueError for a string that is not a strict semver."""
    match = _SEMVER.fullmatch(text)
    if not match:
        raise ValueError(f"'{text}' is not a semantic version (like 1.2.3)")
    core = tuple(int(part) for part in match.group(1, 2, 3))
    if match.group(4) is None:
        return core, 1, ()
    # Numeric identifiers sort numerically and before alphanumeric ones.
    idents = tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                   for p in match.group(4).split("."))
    return core, 0, idents


def newer(candidate: str, running: str) -> bool:
    return precedence(candidate) > precedence(running)
