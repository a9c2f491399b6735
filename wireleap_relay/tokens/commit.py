"""Group commit of sharetokens in a worker: the tokens of streams that arrive while a write
is under way are written together in the next one, so a burst of streams pays for a few
flushes to disk instead of two per stream, and each stream still dials only once its own
token is durable (store.TokenStore.accept_many).

The disk work runs in a thread pool of its own (not the hub's, which DNS lookups share),
one batch at a time, so the worker's other streams keep moving meanwhile.
"""

import functools

import gevent
import gevent.event
from gevent.threadpool import ThreadPool

from wireleap_relay.tokens.store import TokenStore
from wireleap_relay.wire.sharetoken import Sharetoken


class GroupCommit:
    def __init__(self, store: TokenStore):
        self.store = store
        self.batches = 0  # written so far: how well tokens were grouped
        self._waiting: list[tuple[Sharetoken, gevent.event.AsyncResult]] = []
        self._writer: gevent.Greenlet | None = None

    def accept(self, token: Sharetoken) -> None:
        """Block this greenlet until the token is on disk. Raises DuplicateSharetoken if it
        was accepted before, OSError if it could not be written."""
        done = gevent.event.AsyncResult()
        self._waiting.append((token, done))
        if self._writer is None:
            self._writer = gevent.spawn(self._write_batches)
        done.get()

    def _write_batches(self) -> None:
        batch: list[tuple[Sharetoken, gevent.event.AsyncResult]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    failures = _pool().apply(self.store.accept_many,
                                             ([token for token, _ in batch],))
                except Exception as exc:  # noqa: BLE001 - every waiting stream learns it
                    failures = [exc] * len(batch)
                self.batches += 1
                for (_, done), failure in zip(batch, failures, strict=True):
                    if failure is None:
                        done.set(None)
                    else:
                        done.set_exception(failure)
                batch = []
        finally:
            # Killed mid-batch (GreenletExit, a Timeout): no stream may wait for ever. Its
            # tokens may or may not be on disk; its streams are refused either way.
            for _, done in batch:
                if not done.ready():
                    done.set_exception(OSError("the sharetoken store was interrupted"))
            self._writer = gevent.spawn(self._write_batches) if self._waiting else None


@functools.cache
def _pool() -> ThreadPool:
    return ThreadPool(1)
