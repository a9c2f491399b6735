"""Crash-safe file writes: a reader sees the old content or the new one, never a mix."""

import os
import tempfile


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write via a temp file in the same folder, fsync, rename, then fsync the folder."""
    tmp = _durable_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    fsync_dir(os.path.dirname(path) or ".")


def create_exclusive(path: str, data: bytes, mode: int = 0o644) -> bool:
    """Durably create `path` only if it does not exist yet; False if it already did.

    The content goes to a temp file first and is linked into place with link(2), which fails
    when the name exists: two processes racing for the same name cannot both win, and a
    crash leaves either no file or a complete one.
    """
    tmp = _durable_temp(path, data, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        _unlink(tmp)
    fsync_dir(os.path.dirname(path) or ".")
    return True


def _durable_temp(path: str, data: bytes, mode: int) -> str:
    """A fully written and fsynced temp file beside `path`."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".",
                               prefix="." + os.path.basename(path) + ".")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def ensure_dir(folder: str, mode: int = 0o755) -> None:
    """Create `folder` and missing parents durably: each new entry is fsynced in its parent,
    or a crash could lose a file written inside the new folder."""
    if os.path.isdir(folder):
        return
    parent = os.path.dirname(folder.rstrip("/"))
    if parent and parent != folder:
        ensure_dir(parent, mode)
    try:
        os.mkdir(folder, mode)
    except FileExistsError:
        return
    fsync_dir(parent or ".")


def fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
