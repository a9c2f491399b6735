"""The pid file (`wireleap-relay.pid`): a JSON integer, written by the daemon once it is
listening, removed when it stops. A pid whose process is gone is stale."""

import errno
import json
import os

from wireleap_relay.fsutil import write_atomic


class PidFileError(Exception):
    """The pid file exists but cannot be read or parsed."""


class NotAPid(PidFileError):
    """The pid file holds something else than a process id (empty after a crash mid-write,
    or garbage): no daemon can be found through it, so it is as good as stale."""


def read(path: str) -> int | None:
    """The pid in the file; None if there is no file. Raises PidFileError."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PidFileError(f"could not read {path}: {exc.strerror}") from exc
    try:
        pid = json.loads(raw)
    except ValueError:
        pid = None
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise NotAPid(f"{path} holds {raw[:40]!r}, not a process id")
    return pid


def read_quietly(path: str) -> int | None:
    """The pid, or None for a missing or unreadable file (one being replaced right now)."""
    try:
        return read(path)
    except PidFileError:
        return None


def write(path: str, pid: int) -> None:
    write_atomic(path, json.dumps(pid).encode())


def remove(path: str, pid: int | None = None) -> None:
    """Remove the file, but only if it still names `pid` (when given): a new daemon may
    already have replaced it."""
    try:
        if pid is not None and read(path) != pid:
            return
        os.unlink(path)
    except (FileNotFoundError, PidFileError):
        pass


def alive(pid: int) -> bool:
    """Signal-0 probe; a process we may not signal still exists."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
