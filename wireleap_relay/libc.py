"""The C library's functions that Python has no wrapper for (syncfs, malloc_trim), through
ctypes, looked up once per process."""

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
