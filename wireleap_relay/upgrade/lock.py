"""One upgrade or rollback at a time per home: an flock on `<home>/.upgrade.lock`, held
from the first download to the end of the switch.

The supervisor inherits the locked descriptor, so the lock outlives the process that
launched it: an automatic upgrade's supervisor stops the very daemon that started it, and
a manual `upgrade` run meanwhile must not stage over its files.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from wireleap_relay.home import Home
from wireleap_relay.upgrade import UpgradeError

LOCK_NAME = ".upgrade.lock"


def acquire(home: Home) -> int:
    """The locked descriptor; UpgradeError if another upgrade or rollback holds it."""
    path = home.path(LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UpgradeError(f"cannot open {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UpgradeError("another upgrade or rollback of this relay is in progress") \
            from None
    return fd


@contextmanager
def held(home: Home) -> Iterator[int]:
    fd = acquire(home)
    try:
        yield fd
    finally:
        os.close(fd)
