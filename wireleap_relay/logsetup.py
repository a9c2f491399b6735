"""Log lines like the Go relay's (`2021/06/16 12:50:09 message`) on stderr, so operators
can grep both relays' logs alike."""

import logging
import sys


def configure(level: int = logging.INFO, tag: str = "") -> None:
    """`tag` goes before every message, e.g. "worker 1234: " for a worker's lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {tag}%(message)s",
                                           "%Y/%m/%d %H:%M:%S"))
    # The format uses none of these, and each costs every record: under gevent, the thread
    # name makes a dummy thread object per greenlet (2 % of a stream's start).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
