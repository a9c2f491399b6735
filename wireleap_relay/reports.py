"""What workers tell their master about the traffic they relay, and the master's sum of it.

A worker counts into a `Meter` (a few integer additions per chunk, no locks: one thread)
and writes the whole of it, cumulative since the worker started, as one JSON line to its
ready pipe every heartbeat. Cumulative, not deltas: a line the master never read (it was
busy, or the worker died before the next beat) is made up for by the next one, and the
master needs no acknowledgement. The master's `Tally` keeps each live worker's latest line
and folds a worker into its retired sum once it has exited and its last line was read, so
the totals only ever grow while the master runs: counters in the Prometheus sense.

A line looks like:
    {"bytes": {"<contract pk b64>": [from_client, from_remote]},
     "streams": {"ok": 12, "refused": 1}, "connections": 5,
     "active_connections": 2, "active_streams": 3, "sharetokens": 11}
"""

import json
import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# How a stream ended, as counted: one of these per stream.
OUTCOMES = ("ok", "ping", "refused", "dial_timeout", "dial_failed", "timeout", "broken",
            "cancelled", "capped", "internal_error")


class Meter:
    """A worker's counters; the tunnels add to them, the heartbeat reads them."""

    def __init__(self) -> None:
        self._bytes: dict[str, list[int]] = {}
        self.streams: Counter[str] = Counter()
        self.connections = 0  # accepted and past the TLS handshake
        self.active_connections = 0
        self.active_streams = 0
        self.sharetokens = 0  # accepted: stored durably by a stream

    def usage(self, contract: str) -> list[int]:
        """The live [from_client, from_remote] byte counts of one contract: a tunnel's
        pumps add to this list directly, the cheapest count there is per chunk."""
        counts = self._bytes.get(contract)
        if counts is None:
            counts = self._bytes[contract] = [0, 0]
        return counts

    def stream_ended(self, outcome: str) -> None:
        self.streams[outcome] += 1

    def report(self) -> bytes:
        """One line for the master: everything counted since this worker started."""
        return json.dumps({
            "bytes": self._bytes, "streams": self.streams, "connections": self.connections,
            "active_connections": self.active_connections,
            "active_streams": self.active_streams, "sharetokens": self.sharetokens,
        }, separators=(",", ":")).encode() + b"\n"


@dataclass
class Totals:
    """Counters summed over workers: bytes per contract, streams per outcome."""

    bytes: dict[str, list[int]] = field(default_factory=dict)
    streams: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    active_connections: int = 0
    active_streams: int = 0
    sharetokens: int = 0

    def add(self, other: "Totals") -> None:
        for contract, (up, down) in other.bytes.items():
            mine = self.bytes.setdefault(contract, [0, 0])
            mine[0] += up
            mine[1] += down
        self.streams.update(other.streams)
        self.connections += other.connections
        self.active_connections += other.active_connections
        self.active_streams += other.active_streams
        self.sharetokens += other.sharetokens

    @property
    def bytes_relayed(self) -> int:
        return sum(up + down for up, down in self.bytes.values())

    def summary(self) -> str:
        """One log line's worth: what these workers relayed and how their streams ended."""
        from_clients = sum(up for up, _ in self.bytes.values())
        from_remotes = sum(down for _, down in self.bytes.values())
        ended = ", ".join(f"{outcome} {self.streams[outcome]}" for outcome in OUTCOMES
                          if self.streams[outcome])
        return (f"relayed {from_clients} bytes from clients and {from_remotes} bytes from "
                f"remotes on {self.connections} connections; streams: {ended or 'none'}")


def parse_report(line: bytes) -> Totals | None:
    """A worker's line as Totals; None (and a debug line) if it is not one."""
    try:
        obj = json.loads(line)
        return Totals(
            bytes={str(k): [int(v[0]), int(v[1])] for k, v in obj["bytes"].items()},
            streams=Counter({str(k): int(v) for k, v in obj["streams"].items()}),
            connections=int(obj["connections"]),
            active_connections=int(obj["active_connections"]),
            active_streams=int(obj["active_streams"]),
            sharetokens=int(obj["sharetokens"]),
        )
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        log.debug("ignoring a worker report that does not parse: %s", exc)
        return None


class ReportReader:
    """Report lines out of a pipe's bytes, which may cut a line anywhere."""

    MAX_LINE = 1 << 20  # a line longer than this is no report: dropped, not buffered

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[Totals]:
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > self.MAX_LINE:
            self._partial = b""
        return [report for report in map(parse_report, lines) if report is not None]


class Tally:
    """The master's view: the latest report of each live worker plus all retired ones."""

    def __init__(self) -> None:
        self._retired = Totals()
        self._live: dict[int, Totals] = {}

    def update(self, pid: int, report: Totals) -> None:
        self._live[pid] = report

    def retire(self, pid: int) -> None:
        """The worker exited and its last line was read: keep its counts, not its
        gauges."""
        report = self._live.pop(pid, None)
        if report is not None:
            report.active_connections = report.active_streams = 0
            self._retired.add(report)

    def totals(self) -> Totals:
        total = Totals()
        total.add(self._retired)
        for report in self._live.values():
            total.add(report)
        return total
