"""A process and its descendants as /proc shows them: the relay's master and workers,
their memory (PSS, where pages they share count once) and CPU time. For the benchmark and
the attack figures."""

import os
from collections.abc import Iterator

from wireleap_relay.worker import PROCESS_NAME


def children(pid: int) -> list[int]:
    """The children of `pid` (those of each of its threads); none once it is gone."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(child) for child in f.read().split()]
    except OSError:
        pass
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants that are alive now."""
    pids, todo = [], [pid]
    while todo and len(pids) < 1000:
        current = todo.pop()
        pids.append(current)
        todo += children(current)
    return pids


def process_name(pid: int) -> bytes:
    """/proc/<pid>/comm: what `ps -o comm` shows; b"" once it is gone."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().strip()
    except OSError:
        return b""


def pss_kib(pid: int) -> int:
    """Proportional set size of `pid` and its descendants: shared pages count once."""
    return sum(int(line.split()[1]) for text in _read_each(pid, "smaps_rollup")
               for line in text.splitlines() if line.startswith("Pss:"))


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its live descendants."""
    ticks = 0
    for text in _read_each(pid, "stat"):
        fields = text.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    """File descriptors `pid` holds open now (0 once it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def threads(pid: int) -> int:
    """Threads of `pid` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    except (OSError, StopIteration):
        return 0


def workers(master: int) -> list[int]:
    """The live worker processes of a relay's master, known by the name they give
    themselves (worker.PROCESS_NAME): whether forked by the fork server or started on
    their own; not the fork server, nor a passing child (a source tree's version comes
    from `git`), nor reaped ones."""
    found = []
    for pid in process_tree(master)[1:]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if process_name(pid) == PROCESS_NAME and state != "Z":
            found.append(pid)
    return found


def _read_each(pid: int, name: str) -> Iterator[str]:
    """/proc/<p>/<name> of `pid` and each live descendant; those gone meanwhile skipped."""
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/{name}") as f:
                yield f.read()
        except OSError:
            continue
