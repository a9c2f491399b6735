"""Test-only: what a relay process holds that /proc does not show, its live greenlets,
written to `$WIRELEAP_STATS_DIR/<pid>.json` every STATS_INTERVAL seconds. The fault
tests compare them with a baseline; open fds and threads they read from /proc."""

import gc
import json
import os
from collections.abc import Callable

import gevent
from greenlet import greenlet

STATS_DIR_ENV = "WIRELEAP_STATS_DIR"
STATS_INTERVAL = 0.5


def start(extra: Callable[[], dict[str, int]] = dict) -> None:
    """Begin writing this process's figures, if the environment asks for them."""
    folder = os.environ.get(STATS_DIR_ENV)
    if folder:
        gevent.spawn(_write_forever, os.path.join(folder, f"{os.getpid()}.json"), extra)


def _write_forever(path: str, extra: Callable[[], dict[str, int]]) -> None:
    while True:
        figures = {"greenlets": live_greenlets(), **extra()}
        try:
            with open(path + ".tmp", "w") as f:  # no fsync: a test reads it, not a crash
                json.dump(figures, f)
            os.replace(path + ".tmp", path)
        except OSError:
            pass
        gevent.sleep(STATS_INTERVAL)


def live_greenlets() -> int:
    """Greenlets of the main thread started and not finished, the hub and this writer
    included. gc first, so greenlets already unreachable are not counted. Those of other
    threads (each thread pool thread has a hub of its own) come and go with the pools."""
    gc.collect()
    main = _root(greenlet.getcurrent())
    return sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet) and not obj.dead
               and _root(obj) is main)


def _root(glet: greenlet) -> greenlet:
    while glet.parent is not None:
        glet = glet.parent
    return glet
