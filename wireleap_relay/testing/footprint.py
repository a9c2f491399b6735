"""What a relay's processes hold, for the fault tests: per process, its open fds and
threads (from /proc) and its live greenlets (from the figures each process writes when
$WIRELEAP_STATS_DIR is set, `relay/selfstats.py`)."""

import json
import os
import time
from dataclasses import dataclass

from wireleap_relay.testing.procstat import open_fds, threads, workers


@dataclass(frozen=True)
class Holding:
    fds: int
    threads: int
    greenlets: int | None  # None: the process wrote no figures (yet)

    def within(self, baseline: "Holding") -> bool:
        """Nothing more than at the baseline: the same fds and greenlets, and no more
        threads (thread pools let idle threads go, so fewer is fine)."""
        return (self.fds, self.greenlets) == (baseline.fds, baseline.greenlets) and \
            self.threads <= baseline.threads


def footprint(master: int, stats_dir: str) -> dict[int, Holding]:
    """Master and workers, by pid."""
    return {pid: Holding(open_fds(pid), threads(pid), _greenlets(stats_dir, pid))
            for pid in [master, *workers(master)]}


def _greenlets(stats_dir: str, pid: int) -> int | None:
    try:
        with open(os.path.join(stats_dir, f"{pid}.json")) as f:
            return json.load(f)["greenlets"]
    except (OSError, ValueError, KeyError):
        return None


def settled(master: int, stats_dir: str, quiet: float = 1.5,
            timeout: float = 30.0) -> dict[int, Holding]:
    """The footprint once it has not changed for `quiet` seconds (a baseline), or the last
    one seen when `timeout` runs out."""
    deadline = time.monotonic() + timeout
    last, since = footprint(master, stats_dir), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = footprint(master, stats_dir)
        if now != last or any(h.greenlets is None for h in now.values()):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def within(now: dict[int, Holding], baseline: dict[int, Holding]) -> bool:
    """The same processes, each holding nothing more than at the baseline."""
    return now.keys() == baseline.keys() and all(now[pid].within(baseline[pid])
                                                  for pid in now)


def back_to(baseline: dict[int, Holding], master: int, stats_dir: str,
            timeout: float = 30.0) -> dict[int, Holding]:
    """Wait until the footprint is `within` the baseline again; the last one seen."""
    deadline = time.monotonic() + timeout
    now = footprint(master, stats_dir)
    while not within(now, baseline) and time.monotonic() < deadline:
        time.sleep(0.25)
        now = footprint(master, stats_dir)
    return now
