"""`.skip-upgrade-version`: a version the relay will not upgrade to automatically
(operations.md §6.9). Read in both spellings, the JSON string `"1.2.3"` and the bare
`1.2.3` that the 2021 README's example writes; always written as the JSON string."""

import json
import os
from collections.abc import Callable

from wireleap_relay.fsutil import write_atomic

FILE_NAME = ".skip-upgrade-version"


def path(home_root: str) -> str:
    return os.path.join(home_root, FILE_NAME)


def read(home_root: str) -> str | None:
    try:
        with open(path(home_root), encoding="utf-8") as f:
            text = f.read().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return value if isinstance(value, str) and value else None


def write(home_root: str, version: str) -> None:
    write_atomic(path(home_root), json.dumps(version).encode())


def skip(home_root: str, version: str, say: Callable[[str], None]) -> None:
    """Write `version` and say so. A failure is said, not raised: whoever skips a version
    goes on either way."""
    try:
        write(home_root, version)
        say(f"Skipping version {version}")
    except OSError as exc:
        say(f"Could not persist skipped version {version}: {exc}")
