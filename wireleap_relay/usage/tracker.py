"""The master's network usage (control.md §6.1, §6.3): this period's bytes per contract,
saved to stats.json every `write_interval`, a new period every `timeframe` (the old one
archived), and the caps checked every 10 s.

Counting across processes. Workers report cumulative counts and the master's tally sums
them (reports.py), so a reload loses nothing. stats.json holds the period's total; a master
adds to it only the bytes it has not saved yet (its tally now minus its tally at its last
save), re-reading the file under a lock first. In a hand-over the new master and the old
one (whose workers drain for up to a minute) both add their own bytes: none is counted
twice or lost. A crash loses at most one write interval, and the file is replaced
atomically, never left half written.
"""

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gevent
import gevent.lock

from wireleap_relay import duration
from wireleap_relay.config import Config
from wireleap_relay.contract.manager import ContractManager
from wireleap_relay.fsutil import ensure_dir, write_atomic
from wireleap_relay.home import Home
from wireleap_relay.reports import Tally
from wireleap_relay.usage import caps, period
from wireleap_relay.usage.files import (
    Stats,
    StatsCorrupt,
    archive_name,
    decode_stats,
    encode_archive,
    encode_stats,
)

log = logging.getLogger(__name__)

CHECK_INTERVAL = 10.0  # seconds, as Go
CHECK_ENV = "WIRELEAP_USAGE_CHECK_INTERVAL"  # test-only: tests cannot wait 10 s per step
DEFAULT_WRITE_INTERVAL = duration.MINUTE
LOCK_WAIT = 10.0  # the lock is held for a read and a write: longer means something is stuck
MS = 1_000_000  # nanoseconds in a millisecond


def now_ms() -> int:
    return int(time.time() * 1000)


def tracking(cfg: Config) -> bool:
    """On with a timeframe and a write interval that is not 0s."""
    return bool(cfg.network_usage["timeframe"]) and cfg.network_usage["write_interval"] != 0


def for_config(cfg: Config, home: Home, manager: ContractManager,
               relay_pk: str) -> "UsageTracker | UsageOff":
    if tracking(cfg):
        return UsageTracker(home, cfg, manager, relay_pk)
    if cfg.network_usage["timeframe"]:
        log.info("network usage measurement is disabled, write_interval must be set")
    return UsageOff()


class UsageOff:
    """Tracking off: no counts, no caps; the status API says so."""

    def status_json(self) -> dict | None:
        return None

    def contract_json(self, contract_pk_b64: str) -> dict:
        return {"network_cap": None, "network_usage": 0, "network_cap_reached": False}

    def start(self) -> None:
        pass

    def follow(self, tally: Tally) -> None:
        pass

    def run(self, gate_changed: Callable[[], None]) -> None:
        pass

    def apply(self, cfg: Config) -> None:
        pass

    def save(self) -> None:
        pass


class UsageTracker:
    def __init__(self, home: Home, cfg: Config, manager: ContractManager, relay_pk: str,
                 clock: Callable[[], int] = now_ms):
        self.home = home
        self.manager = manager
        self.relay_pk = relay_pk
        self.clock = clock
        self.apply(cfg)
        self.stats = Stats(clock())  # as of our last read or write of stats.json
        self.next_reset = self.stats.created_at + self.timeframe
        self._tally: Tally | None = None
        self._saved: dict[str, int] = {}  # our tally's counts already in stats.json
        self._busy = gevent.lock.RLock()

    def apply(self, cfg: Config) -> None:
        """Limits, timeframe and intervals from a (re)loaded config. Per-contract limits
        are read from the contract manager's entries, which a reload updates. A config
        that turns tracking off is not applied: that takes a restart, as in Go."""
        if not tracking(cfg):
            return
        usage = cfg.network_usage
        self.timeframe = usage["timeframe"] // MS
        self.global_limit = usage["global_limit"]
        self.write_interval = (usage["write_interval"] or DEFAULT_WRITE_INTERVAL) // MS
        self.archive_dir = self.home.path(usage["archive_dir"]) if usage["archive_dir"] \
            else None

    def follow(self, tally: Tally) -> None:
        """Count what this master's workers relay from now on."""
        self._tally = tally

    # --- the API's view (control.md §6.2) --------------------------------------------------

    def status_json(self) -> dict | None:
        return {"timeframe_since": self.stats.created_at, "timeframe_until": self.next_reset,
                "cap": self.global_limit if self._capping() else None,
                "usage": sum(self.used().values())}

    def contract_json(self, contract_pk_b64: str) -> dict:
        contract = self._contracts().get(contract_pk_b64)
        return {"network_cap": (contract.entry.network_usage_limit or None) if contract
                else None,
                "network_usage": self.used().get(contract_pk_b64, 0),
                "network_cap_reached": bool(contract and contract.capped == caps.Level.HARD)}

    # --- counting --------------------------------------------------------------------------

    def _live(self) -> dict[str, int]:
        if self._tally is None:
            return {}
        return {pk: up + down for pk, (up, down) in self._tally.totals().bytes.items()}

    def _unsaved(self, live: dict[str, int]) -> dict[str, int]:
        return {pk: n - self._saved.get(pk, 0) for pk, n in live.items()}

    def used(self) -> dict[str, int]:
        """This period's bytes per contract: stats.json as last read, plus ours since."""
        return self._with_unsaved(self._live()).counts

    def _contracts(self) -> dict:
        return {c.key_b64: c for c in self.manager.contracts.values()}

    def _capping(self) -> bool:
        return bool(self.global_limit) or any(c.entry.network_usage_limit for c in
                                              self.manager.contracts.values())

    # --- the period and stats.json ------------------------------------------------------------

    def start(self) -> None:
        """Before the first enrollment: take up the saved period (or begin one), roll it
        over if it has ended, and note the contracts already over a cap, which are then
        not enrolled. OSError if stats.json cannot be read or written."""
        with self._busy, self._locked():
            self.stats = self._read() or Stats(self.clock())
            if not self._roll_over_locked():
                self._write(self.stats)
        self.manager.apply_caps(self._levels())
        log.info("network usage: period since %d until %d (epoch ms), %d bytes used so far",
                 self.stats.created_at, self.next_reset, sum(self.stats.counts.values()))

    def save(self) -> None:
        """Add our unsaved bytes to stats.json. Never raises: a failure is logged and the
        bytes are saved next time."""
        try:
            with self._busy, self._locked():
                self._take_up_file()
                live = self._live()
                self._write(self._with_unsaved(live))
                self._saved = live
        except OSError as exc:
            log.info("could not save network usage to %s: %s", self.home.stats, exc)

    def roll_over(self) -> bool:
        """If the period has ended: archive it, begin the next one. True if it did."""
        try:
            with self._busy, self._locked():
                self._take_up_file()
                return self._roll_over_locked()
        except OSError as exc:
            log.info("could not begin a new network usage period: %s", exc)
            return False

    def _roll_over_locked(self) -> bool:
        next_reset, due = period.next_reset(self.stats.created_at, self.timeframe,
                                            self.clock())
        if not due:
            self.next_reset = next_reset
            return False
        start = next_reset - self.timeframe
        live = self._live()
        finished = self._with_unsaved(live)  # what we relayed until now is the old period's
        if self.archive_dir:
            ensure_dir(self.archive_dir)
            active = {pk: c.enrolled for pk, c in self._contracts().items()}
            write_atomic(os.path.join(self.archive_dir, archive_name(self.relay_pk, start)),
                         encode_archive(self.relay_pk, finished, active, start, self.clock()))
        self._write(Stats(start))
        self._saved, self.next_reset = live, next_reset
        log.info("network usage: period %d-%d ended with %d bytes; a new one runs until %d",
                 finished.created_at, start, sum(finished.counts.values()), self.next_reset)
        return True

    def _take_up_file(self) -> None:
        """stats.json as it is now: another master may have added to it or begun a new
        period. A file deleted meanwhile is written again from what we know, as Go does."""
        on_disk = self._read()
        if on_disk is None:
            return
        if on_disk.created_at != self.stats.created_at:
            self.next_reset = period.next_reset(on_disk.created_at, self.timeframe,
                                                self.clock())[0]
        self.stats = on_disk

    def _with_unsaved(self, live: dict[str, int]) -> Stats:
        """A copy of the period's stats with our unsaved bytes added."""
        stats = Stats(self.stats.created_at, counts=dict(self.stats.counts))
        stats.add(self._unsaved(live))
        return stats

    def _read(self) -> Stats | None:
        """stats.json, or None if there is none. A file that is not one is moved aside
        (kept for the operator) and treated as missing: a new period at start, rewritten
        from our counts while running."""
        try:
            with open(self.home.stats, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        try:
            return decode_stats(raw)
        except StatsCorrupt as exc:
            aside = f"{self.home.stats}.corrupt-{self.clock()}"
            os.replace(self.home.stats, aside)
            log.info("%s is not a network usage file (%s): moved it to %s", self.home.stats,
                     exc, aside)
            return None

    def _write(self, stats: Stats) -> None:
        """Replace stats.json with `stats`, which become ours once written."""
        stats.updated_at = self.clock()
        write_atomic(self.home.stats, encode_stats(stats, list(self._contracts())))
        self.stats = stats

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The lock between masters; polled, so the other greenlets keep running."""
        fd = os.open(self.home.stats_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + LOCK_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.home.stats_lock} stayed locked for "
                                           f"{LOCK_WAIT:g}s") from None
                    gevent.sleep(0.01)
            yield
        finally:
            os.close(fd)

    # --- caps ------------------------------------------------------------------------------

    def _levels(self) -> dict[str, caps.Level]:
        limits = {pk: c.entry.network_usage_limit for pk, c in self._contracts().items()}
        return caps.levels(self.used(), limits, self.global_limit)

    def check(self, gate_changed: Callable[[], None]) -> None:
        """Act on the caps; `gate_changed` tells the workers."""
        if self.manager.apply_caps(self._levels()):
            gate_changed()

    def run(self, gate_changed: Callable[[], None]) -> None:
        """The master's loop: new periods when due, caps every CHECK_INTERVAL, saves every
        write interval."""
        check_every = int(float(os.environ.get(CHECK_ENV, CHECK_INTERVAL)) * 1000)
        due_check = self.clock() + check_every
        due_write = self.clock() + self.write_interval
        due_reset = self.next_reset + 1  # Go's period ends strictly after its last ms
        while True:
            now = self.clock()
            if now >= due_reset:
                if self.roll_over():
                    self.check(gate_changed)
                # After a failure, try again at the next check rather than in a busy loop.
                due_reset = self.next_reset + 1 if self.next_reset >= now else \
                    now + check_every
            if now >= due_check:
                self.check(gate_changed)
                due_check = now + check_every
            if now >= due_write:
                self.save()
                due_write = now + self.write_interval
            gevent.sleep(max(10, min(due_reset, due_check, due_write) - self.clock()) / 1000)
