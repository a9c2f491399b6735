"""Settlement: submitting pending sharetokens to their contracts (control.md §4.2, §4.3).

Each token is due at `settlement_open + 1`. On every tick the due ones are POSTed, one per
request, a few at a time. What follows an answer:
  accepted                                  → archived (if configured), removed from pending
  409 duplicate sharetoken                  → the contract already has it (a crash between
                                              its answer and our bookkeeping): as accepted
  400 settlement window already closed      → worthless now: moved to expired/
  anything else (contract down, 5xx, ...)   → tried again next tick while that tick is still
                                              inside the window, else moved to expired/
Go 0.6.1 instead drops every failed token from its schedule until the next restart.

The pending folder is the schedule: every tick lists it afresh, so tokens accepted by any
process, or left over from earlier runs, are all picked up, and nothing is held in memory
that a crash could lose. A token of a contract no longer in the config goes to the URL it
had (the store remembers every contract's), until its window closes like any other; one
whose contract was never known is set aside once its window has closed.

The file work (listing, archiving, fsync) runs in the hub's thread pool: the master's
loop also answers signals and sends heartbeats.
"""

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent
import gevent.pool

from wireleap_relay.contract.client import ControlError, SignedClient
from wireleap_relay.tokens.counts import TokenCounts
from wireleap_relay.tokens.store import EXPIRED, MALFORMED, TokenStore
from wireleap_relay.wire import b64
from wireleap_relay.wire.sharetoken import Sharetoken

log = logging.getLogger(__name__)

CONCURRENCY = 8


@dataclass
class TickReport:
    submitted: int = 0
    discarded: int = 0
    retrying: int = 0


@dataclass
class Submitter:
    store: TokenStore
    client: SignedClient
    contract_urls: Callable[[], dict[bytes, str]]
    interval: float
    archive_root: str | None = None
    clock: Callable[[], float] = time.time
    counts: TokenCounts = field(default_factory=lambda: TokenCounts(lambda: 0))
    _parsed: dict[str, Sharetoken] = field(default_factory=dict)

    def run(self) -> None:
        """The submission loop (a greenlet): the first tick one interval after start."""
        while True:
            gevent.sleep(self.interval)
            try:
                self.tick()
            except OSError as exc:  # a full or read-only disk: try again next tick
                log.info("sharetoken submission run failed: %s; trying again in %gs", exc,
                         self.interval)

    def tick(self) -> TickReport:
        report = TickReport()
        now = self.clock()
        current = self.contract_urls()
        try:
            urls = _offload(self.store.remember_urls, current)
        except OSError as exc:  # a full disk must not hold up the tokens already stored
            log.info("could not save the contracts' URLs: %s", exc)
            urls = {**_offload(self.store.known_urls), **current}
        for path in _offload(self.store.remove_leftovers):
            log.info("removed %s, left by a write that crashed", path)
        due = [(path, token) for path, token in self._scan() if
               token.contract.settlement_open + 1 <= now]
        pool = gevent.pool.Pool(CONCURRENCY)
        for path, token in due:
            pool.spawn(self._submit, path, token, urls.get(token.contract.public_key), report)
        pool.join()
        return report

    def _scan(self) -> list[tuple[str, Sharetoken]]:
        """Pending tokens, parsed once per file and remembered by path."""
        paths = _offload(self.store.pending)
        self.counts.listed(len(paths))
        self._parsed = {p: self._parsed[p] for p in paths if p in self._parsed}
        found = []
        for path in paths:
            if path not in self._parsed:
                try:
                    self._parsed[path] = _offload(self.store.load, path)
                except (OSError, ValueError) as exc:
                    self._set_aside(path, MALFORMED, f"malformed sharetoken file: {exc}")
                    continue
            found.append((path, self._parsed[path]))
        return found

    def _submit(self, path: str, token: Sharetoken, url: str | None,
                report: TickReport) -> None:
        if url is None:
            if self.clock() > token.contract.settlement_close:
                report.discarded += 1
                self._set_aside(path, EXPIRED, "no URL was ever known for SC "
                                f"{token.contract_key_b64} and the submission window of "
                                f"sharetoken sig={token.signature_b64} has closed")
            else:
                log.info("cannot submit sharetoken to unknown SC %s",
                         token.contract_key_b64)
            return
        log.info("submitting sharetoken sig=%s to %s (%s)", token.signature_b64, url,
                 token.contract_key_b64)
        try:
            self.client.perform("POST", url + "/submit", token.to_dict())
        except ControlError as exc:
            self._refused(path, token, exc, report)
            return
        self._accepted(path, token, report)

    def _accepted(self, path: str, token: Sharetoken, report: TickReport) -> None:
        report.submitted += 1
        self.counts.submitted += 1
        try:
            if self.archive_root:
                _offload(self.store.archive, path, self.archive_root)
            else:
                _offload(self.store.remove, path)
        except OSError as exc:
            log.info("could not archive sharetoken (sig=%s): %s, keeping it in store",
                     token.signature_b64, exc)

    def _refused(self, path: str, token: Sharetoken, exc: ControlError,
                 report: TickReport) -> None:
        status = exc.status
        if status and status.code == 409 and status.cause == "duplicate sharetoken":
            self._accepted(path, token, report)
            return
        if status and (status.code, status.description, status.cause) == \
                (400, "bad request", "settlement window already closed"):
            report.discarded += 1
            self._set_aside(path, EXPIRED, "discarding sharetoken submitted post-settlement: "
                            + b64.encode(token.public_key))
            return
        if self.clock() + self.interval < token.contract.settlement_close:
            report.retrying += 1
            log.info("could not submit sharetoken (sig=%s): %s, retrying in %gs",
                     token.signature_b64, exc, self.interval)
            return
        report.discarded += 1
        self._set_aside(path, EXPIRED, f"could not submit sharetoken (sig="
                        f"{token.signature_b64}): {exc}, next submission attempt is past "
                        "submission window! skipping sharetoken")

    def _set_aside(self, path: str, kind: str, why: str) -> None:
        log.info("%s", why)
        self.counts.rejected += 1
        try:
            moved = _offload(self.store.set_aside, path, kind)
            log.info("moved %s to %s", os.path.basename(path), os.path.dirname(moved))
        except OSError as exc:
            log.info("could not move %s aside: %s", path, exc)


def _offload(function, *args):
    """Run blocking file work in the hub's thread pool, so the loop keeps going."""
    return gevent.get_hub().threadpool.apply(function, args)
