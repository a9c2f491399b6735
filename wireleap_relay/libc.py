"""The C library's functions that Python has no wrapper for (syncfs, malloc_trim, prctl),
through ctypes, looked up once per process."""

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def function(name: str) -> Callable[..., int] | None:
    """libc's `name`; None where libc or that function is missing (syncfs before glibc
    2.14, malloc_trim outside glibc)."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


PR_SET_NAME = 15


def name_process(name: bytes) -> None:
    """The name `ps -o comm`, top and /proc/<pid>/comm show (15 bytes at most); the
    command line stays as it was. Workers forked by the fork server have the master's."""
    prctl = function("prctl")
    if prctl is not None:
        prctl(PR_SET_NAME, name, 0, 0, 0)
