"""`make bench`: relays of this project side by side with the Go relay 0.6.1, in one run,
through the real Go client 0.6.3 (its SOCKS5 front) with curl, downloading from a local
HTTP server; a table with both columns and the ratio ours/Go.

    python -m wireleap_relay.testing bench [--smoke] [--peers DIR] [--json PATH]

Everything binds 127.0.0.1. One fake contract+directory; three relays of this project and
three Go relays (fronting, entropic, backing), each in its own home; four Go clients (ours
and Go, 1 and 3 hops), each with a whitelist that pins its circuit; the HTTP target
(`bench_target`) in a process of its own. Samples of ours and Go alternate, so the noise of
the machine falls on both. Every figure is a median over several runs, and only the ratio
means anything: absolute numbers depend on the machine, and the Go client and curl share
its cores with the relays.

Where ../shared/peers (the Go binaries) is missing, the bench says so and measures our
relays alone, through our own Python SOCKS5 + circuit client instead of the Go client: those
figures do not compare with the Go client's.

Memory and CPU are read from /proc for all processes of a relay (ours: master + workers; the
Go relay is one process): PSS from smaps_rollup, utime+stime from stat. Slow streams (1,000
and 2,000 open at once for memory) go through our Python circuit client straight to the
backing relay, because the Go client ends every tunnel after about 10 s.
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import gevent
import gevent.pool
import requests
from gevent.server import StreamServer

from wireleap_relay.testing import circuit, h2client
from wireleap_relay.testing.devnet import fake_contract, ready_subprocess
from wireleap_relay.testing.gopeers import (
    CLIENT_BINARY,
    RELAY_BINARY,
    GoClient,
    GoRelayProcess,
    make_go_relay_home,
)
from wireleap_relay.testing.procstat import cpu_seconds, pss_kib
from wireleap_relay.testing.relayproc import RelayHome, RelayProcess, make_home
from wireleap_relay.testing.servicekey import Wallet, write_accesskey_file
from wireleap_relay.testing.socks5 import Socks5Server
from wireleap_relay.wire import b64

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_PEERS = os.path.normpath(os.path.join(ROOT, "..", "shared", "peers"))
ROLES = ("fronting", "entropic", "backing")
GOAWAY = re.compile(r"server sent GOAWAY and closed the connection; LastStreamID=\d+, "
                    r"ErrCode=(\w+)")
MEMORY = "memory"  # the name of the backing relay that only the slow streams use
SIDES = ("ours", "go")
CURL_MAX_TIME = 9.5  # the Go client cuts every tunnel about 10 s after it opened
STREAMS_PER_CONNECTION = 200  # our slow-stream client: below the relays' 250
SLOW_OPEN_INFLIGHT = 200
HOLD_SECONDS = 240  # the target ends a slow stream after this long at the latest
PHASE_TIMEOUT = 120.0  # no single measurement may take longer
SMALL = 1024


@dataclass(frozen=True)
class Profile:
    name: str
    probe: int  # bytes of the probe download that sizes the large one
    max_download: int
    download_seconds: float  # the large download lasts about this long at the slower relay
    runs: int  # large downloads and parallel batches per side and hop count
    ttfb_samples: int
    parallel: int
    setup_streams: int
    setup_inflight: int
    setup_runs: int
    burst: int
    burst_runs: int
    slow_steps: tuple[int, int]
    submission: bool
    timeout: float  # the whole run


FULL = Profile("full", probe=32 * MiB, max_download=256 * MiB, download_seconds=4.0, runs=7,
               ttfb_samples=30, parallel=50, setup_streams=1000, setup_inflight=100,
               setup_runs=3, burst=2000, burst_runs=3, slow_steps=(1000, 2000),
               submission=True, timeout=900)
SMOKE = Profile("smoke", probe=MiB, max_download=2 * MiB, download_seconds=1.0, runs=1,
                ttfb_samples=1, parallel=5, setup_streams=20, setup_inflight=10,
                setup_runs=1, burst=20, burst_runs=1, slow_steps=(10, 20),
                submission=False, timeout=240)


class MeasureError(Exception):
    pass


# /proc: the whole machine's CPU time (a relay's own: procstat.py).

def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores; steal included)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its descendants that have been waited for."""
    me, children = (resource.getrusage(who)
                    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


# The sides: relays of one kind and the clients that use them.

@dataclass
class Side:
    name: str  # "ours" or "go"
    relays: dict[str, RelayProcess | GoRelayProcess] = field(default_factory=dict)
    socks: dict[int, tuple[str, int]] = field(default_factory=dict)  # hops -> SOCKS address

    def home(self, role: str) -> RelayHome:
        return self.relays[role].relay

    def pid(self, role: str) -> int:
        return self.relays[role].proc.pid

    def pids(self, hops: int) -> list[int]:
        return [self.pid(role) for role in (ROLES if hops == 3 else ("backing",))]


def whitelist(side: Side, hops: int) -> list[str]:
    return [side.home(role).address for role in (ROLES if hops == 3 else ("backing",))]


# Drivers: curl through a SOCKS5 front, and a gevent SOCKS5 client for many streams.

def curl_fetch(curl: str, socks: tuple[str, int], url: str, size: int) -> dict[str, float]:
    """One download with curl; its timings (seconds)."""
    done = subprocess.run(
        [curl, "-sS", "-o", "/dev/null", "--max-time", str(CURL_MAX_TIME),
         "--socks5-hostname", f"{socks[0]}:{socks[1]}",
         "-w", "%{http_code} %{size_download} %{time_starttransfer} %{time_total}", url],
        capture_output=True, text=True, timeout=CURL_MAX_TIME + 10)
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) != 4 or fields[0] != "200" \
            or int(fields[1]) != size:
        raise MeasureError(f"curl {url}: exit {done.returncode}, {done.stdout!r} "
                           f"{done.stderr.strip()[:200]}")
    return {"ttfb": float(fields[2]), "total": float(fields[3])}


def curl_parallel(curl: str, socks: tuple[str, int], url: str, n: int) -> float:
    """Seconds for `n` downloads of `url` started at once by one curl (--parallel)."""
    outputs = [arg for _ in range(n) for arg in ("-o", "/dev/null", url)]
    start = time.perf_counter()
    done = subprocess.run(
        [curl, "-sS", "--parallel", "--parallel-immediate", "--parallel-max", str(n),
         "--max-time", str(CURL_MAX_TIME), "--socks5-hostname", f"{socks[0]}:{socks[1]}",
         "-w", "%{http_code}\n", *outputs],
        capture_output=True, text=True, timeout=CURL_MAX_TIME + 10)
    elapsed = time.perf_counter() - start
    codes = done.stdout.split()
    if done.returncode != 0 or codes != ["200"] * n:
        raise MeasureError(f"curl --parallel: exit {done.returncode}, {codes.count('200')} of "
                           f"{n} answered 200; {done.stderr.strip()[:200]}")
    return elapsed


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise MeasureError(f"ended after {len(data)} of {n} bytes")
        data += chunk
    return data


def _read_until(sock: socket.socket | h2client.H2Stream, marker: bytes, eof: str) -> bytes:
    """What arrives until `marker` has (or 16 KiB have); MeasureError(eof) at an early end."""
    data = b""
    while marker not in data and len(data) < 16 * KiB:
        chunk = sock.recv(16 * KiB)
        if not chunk:
            raise MeasureError(eof)
        data += chunk
    return data


def socks_get(socks: tuple[str, int], target: tuple[str, int], path: str,
              timeout: float) -> float:
    """GET `path` from `target` through a SOCKS5 front; the seconds until the response header
    arrived. Reads the body up to its Content-Length (the Go client appends to the tunnel
    after the target closed it)."""
    start = time.perf_counter()
    with gevent.Timeout(timeout, MeasureError(f"no answer in {timeout:g} s")), \
            socket.create_connection(socks) as sock:
        sock.sendall(b"\x05\x01\x00")
        if _recv_exact(sock, 2) != b"\x05\x00":
            raise MeasureError("SOCKS5: no-auth refused")
        sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(target[0])
                     + target[1].to_bytes(2, "big"))
        reply = _recv_exact(sock, 4)
        if reply[1] != 0:
            raise MeasureError(f"SOCKS5 CONNECT failed with {reply[1]}")
        _recv_exact(sock, {1: 6, 4: 18}.get(reply[3]) or _recv_exact(sock, 1)[0] + 2)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {target[0]}:{target[1]}\r\n"
                     "Connection: close\r\n\r\n".encode())
        data = _read_until(sock, b"\r\n\r\n", "the tunnel ended before the response header")
        header_at = time.perf_counter() - start
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise MeasureError(f"answer {head[:40]!r}")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        if len(body) < length:
            _recv_exact(sock, length - len(body))
    return header_at


def many_gets(socks: tuple[str, int], target: tuple[str, int], n: int, inflight: int,
              timeout: float) -> tuple[float, list[float], int]:
    """`n` GETs of 1 KiB, `inflight` at a time: (elapsed s, header times s, failures)."""
    pool = gevent.pool.Pool(inflight)
    headers: list[float] = []
    errors: dict[str, int] = {}

    def one() -> None:
        try:
            headers.append(socks_get(socks, target, f"/bytes/{SMALL}", timeout))
        except (OSError, MeasureError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            errors[error] = errors.get(error, 0) + 1

    start = time.perf_counter()
    for _ in range(n):
        pool.spawn(one)
    if not pool.join(timeout=PHASE_TIMEOUT):
        pool.kill()
        raise MeasureError(f"{n} streams did not finish in {PHASE_TIMEOUT:g} s")
    if errors:
        print(f"  {sum(errors.values())} of {n} streams failed: {errors}", flush=True)
    return time.perf_counter() - start, headers, sum(errors.values())


# Slow streams: our Python circuit client, 1 hop, straight to a relay.

class SlowStreams:
    """Streams held open to /hold on the target through one relay, which sends a byte a
    second: open at the relay, hardly any traffic."""

    def __init__(self, relay: RelayHome, target: str, wallet: Wallet) -> None:
        self.relay = relay
        self.address = h2client.RelayAddress.parse(relay.address)
        self.target = target
        self.wallet = wallet
        self.connections: list[h2client.H2ClientConnection] = []
        self.streams: list[h2client.H2Stream] = []
        self.failed = 0
        self._on_current = STREAMS_PER_CONNECTION

    def open(self, n: int) -> None:
        """`n` more streams; back once each got its response header and first byte."""
        key, contract = self.wallet.current()
        fresh = []
        for _ in range(n):
            if self._on_current >= STREAMS_PER_CONNECTION:
                self.connections.append(_connect_settled(self.address))
                self._on_current = 0
            payload = circuit.hop_payload(f"target://{self.target}", "tcp", key,
                                          self.relay.pubkey, contract)
            fresh.append(self.connections[-1].open_stream(
                payload, authority=self.address.authority, path=self.address.path))
            self._on_current += 1
        self.streams += fresh
        pool = gevent.pool.Pool(SLOW_OPEN_INFLIGHT)
        for stream in fresh:
            pool.spawn(self._request, stream)
        if not pool.join(timeout=PHASE_TIMEOUT):
            pool.kill()
            raise MeasureError(f"{n} slow streams not open in {PHASE_TIMEOUT:g} s")

    def _request(self, stream: h2client.H2Stream) -> None:
        try:
            stream.settimeout(30)
            stream.sendall(f"GET /hold/{HOLD_SECONDS} HTTP/1.1\r\nHost: {self.target}\r\n"
                           "\r\n".encode())
            _read_until(stream, b"\r\n\r\n.", "ended")  # the header and the first byte
        except (OSError, MeasureError):
            self.failed += 1

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
        self.connections, self.streams = [], []


def _connect_settled(address: h2client.RelayAddress) -> h2client.H2ClientConnection:
    """A connection whose relay's SETTINGS arrived (and got our ACK): until the ACK, hyper-h2
    on the relay's side enforces its default of 100 concurrent streams, not the 250 it
    announces, and the Go client never opens more than 100 before the SETTINGS either."""
    conn = h2client.connect(address)
    deadline = time.monotonic() + 10
    while conn._h2.remote_settings.max_concurrent_streams > 1 << 31:  # still the default
        if conn.error is not None or time.monotonic() > deadline:
            raise MeasureError(f"no SETTINGS from {address.text}: {conn.error}")
        gevent.sleep(0.005)
    return conn


# Results.

@dataclass
class Row:
    label: str
    unit: str
    better: str  # "higher" or "lower"
    values: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    digits: int = 1

    def ratio(self) -> float | None:
        ours, go = self.values.get("ours"), self.values.get("go")
        if ours is None or go is None or go == 0:
            return None
        return ours / go


ORDER = ("download_1", "download_3", "ttfb_1", "ttfb_3", "parallel_1", "parallel_3",
         "setup_rate", "setup_failed", "burst_last_header", "burst_failed", "cpu_per_gib_1",
         "cpu_per_gib_3", "pss_idle", "pss_after", "pss_fresh")


class Results:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.notes: list[str] = []

    def ordered(self) -> list[tuple[str, Row]]:
        """The rows in the table's order: ORDER, then the others as they came."""
        rank = {key: i for i, key in enumerate(ORDER)}
        return sorted(self.rows.items(), key=lambda item: rank.get(item[0], len(ORDER)))

    def row(self, key: str, label: str, unit: str, better: str, digits: int = 1) -> Row:
        if key not in self.rows:
            self.rows[key] = Row(label, unit, better, digits=digits)
        return self.rows[key]

    def set(self, key: str, side: str, value: float | None) -> None:
        self.rows[key].values[side] = value

    def fail(self, key: str, side: str, error: BaseException) -> None:
        self.rows[key].values[side] = None
        self.rows[key].errors[side] = f"{type(error).__name__}: {error}"[:300]


# The bench.

class Bench:
    def __init__(self, profile: Profile, peers: str | None, curl: str | None,
                 root: str, stack: ExitStack) -> None:
        self.profile = profile
        self.peers = peers  # None: the Go binaries are missing
        self.curl = curl
        self.root = root
        self.stack = stack
        self.results = Results()
        self.sides: list[Side] = []
        self.go_clients: list[GoClient] = []
        self._stopped: set[int] = set()
        self.contract_url = ""
        self.target: tuple[str, int] = ("", 0)
        self.sizes: dict[int, int] = {}

    # Setup.

    def start(self) -> None:
        self.contract_url = self.stack.enter_context(fake_contract(
            self.root, "--servicekey-duration", "3600", "--submission-window", "3600"))
        self.target = self.stack.enter_context(start_target(self.root))
        ours, go = Side("ours"), Side("go")
        # The circuit's relays, and a backing relay that only the slow streams use.
        relays = [(role, role) for role in ROLES] + [(MEMORY, "backing")]
        jobs = [gevent.spawn(self._start_ours, ours, name, role) for name, role in relays]
        if self.peers:
            jobs += [gevent.spawn(self._start_go, go, name, role) for name, role in relays]
        _join(jobs)
        self.sides = [ours, go] if self.peers else [ours]

    def _start_ours(self, side: Side, name: str, role: str) -> None:
        home = make_home(self.root, f"ours-{name}", self.contract_url, role)
        proc = RelayProcess(home)
        self.stack.callback(proc.stop)
        side.relays[name] = proc.start(timeout=60)

    def _start_go(self, side: Side, name: str, role: str) -> None:
        home = make_go_relay_home(self.peers, self.root, f"go-{name}", self.contract_url, role)
        proc = GoRelayProcess(home, self.contract_url + "/dir")
        self.stack.callback(proc.stop)
        side.relays[name] = proc.start(timeout=60)

    def start_clients(self) -> None:
        """A client per side and hop count, pinned to that side's relays by its whitelist:
        the Go client, or without it our Python SOCKS5 + circuit client."""
        if not self.peers:
            for side in self.sides:
                for hops in (1, 3):
                    side.socks[hops] = self._python_socks(side, hops)
            return
        info = requests.get(self.contract_url + "/info", timeout=10).json()
        contract_pubkey = b64.decode(info["pubkey"])
        jobs = []
        for side in self.sides:
            for hops in (1, 3):
                folder = os.path.join(self.root, f"client-{side.name}-{hops}")
                os.makedirs(folder)
                accesskey = os.path.join(folder, "accesskey.json")
                write_accesskey_file(accesskey, self.contract_url, contract_pubkey, 4)
                client = GoClient(self.peers, folder, hops=hops,
                                  whitelist=whitelist(side, hops))
                self.go_clients.append(client)
                self.stack.callback(self._stop_client, client)
                jobs.append(gevent.spawn(self._start_client, client, accesskey, side, hops))
        _join(jobs)

    @staticmethod
    def _start_client(client: GoClient, accesskey: str, side: Side, hops: int) -> None:
        client.start(timeout=30)
        client.import_accesskeys(accesskey)
        client.socks_start(timeout=30)
        host, port = client.socks_address.rsplit(":", 1)
        side.socks[hops] = (host, int(port))

    def _python_socks(self, side: Side, hops: int) -> tuple[str, int]:
        chain = [(side.home(role).address, side.home(role).pubkey)
                 for role in (ROLES if hops == 3 else ("backing",))]
        wallet, pool = Wallet(self.contract_url), circuit.ConnectionPool()

        def dial(host: str, port: int, protocol: str) -> circuit.Circuit:
            return circuit.dial(chain, f"{host}:{port}", protocol, *wallet.current(),
                                pool=pool)

        server = Socks5Server(dial=dial)
        server.start()
        self.stack.callback(server.stop)
        self.stack.callback(pool.close)
        return server.address

    def stop_clients(self) -> None:
        """Stop the Go clients, after noting the GOAWAYs their logs show: a relay that sends
        one to a real client is part of the result."""
        goaways: dict[str, dict[str, int]] = {}
        for client in self.go_clients:
            side = os.path.basename(client.home).split("-")[1]
            for match in GOAWAY.finditer(client.log_text()):
                counts = goaways.setdefault(side, {})
                counts[match.group(1)] = counts.get(match.group(1), 0) + 1
            self._stop_client(client)
        for side, counts in goaways.items():
            self.results.notes.append(
                "streams the Go client lost to a GOAWAY from the relay (its log's circuit dial "
                f"errors), {side}: "
                + ", ".join(f"{n} x {code}" for code, n in sorted(counts.items())))

    def _stop_client(self, client: GoClient) -> None:
        """Once: a second stop would signal the forwarder's pid from a stale pid file."""
        if id(client) not in self._stopped:
            self._stopped.add(id(client))
            client.stop()

    def url(self, path: str) -> str:
        return f"http://{self.target[0]}:{self.target[1]}{path}"

    # Measurements.

    def measure(self, key: str, side: Side, what: Callable[[], float | None]) -> None:
        """`what`'s figure for `side` in row `key`, or the error that stopped it."""
        try:
            with gevent.Timeout(PHASE_TIMEOUT * 2, MeasureError("took too long")):
                self.results.set(key, side.name, what())
        except (OSError, MeasureError, subprocess.SubprocessError, ValueError) as exc:
            self.results.fail(key, side.name, exc)
            print(f"  {key} ({side.name}) failed: {exc}", flush=True)

    def alternating(self, runs: int) -> Iterator[tuple[int, Side]]:
        """(run, side) with the order of the sides alternating from run to run."""
        for run in range(runs):
            for side in self.sides if run % 2 == 0 else list(reversed(self.sides)):
                yield run, side

    def warm_up(self) -> None:
        """A first stream through every client: the Go client activates its servicekey and
        dials its first relay then, which is no part of any figure."""
        for side in self.sides:
            for hops in (1, 3):
                for _ in range(2):
                    curl_fetch(self.curl, side.socks[hops], self.url(f"/bytes/{SMALL}"),
                               SMALL)

    def memory(self, key: str, label: str) -> None:
        self.results.row(key, label, "MiB", "lower")
        for side in self.sides:
            self.measure(key, side, lambda side=side: pss_kib(side.pid("backing")) / KiB)

    def size_downloads(self) -> None:
        """Each large download lasts about `download_seconds` at the slower side's probe
        rate, capped at `max_download`: far from the Go client's 10 s cut."""
        p = self.profile
        for hops in (1, 3):
            rates = []
            for side in self.sides:
                timing = curl_fetch(self.curl, side.socks[hops], self.url(f"/bytes/{p.probe}"),
                                    p.probe)
                rates.append(p.probe / timing["total"])
            fit = int(min(rates) * p.download_seconds) // MiB * MiB
            self.sizes[hops] = max(p.probe, min(p.max_download, fit))
        self.results.notes.append(
            f"large download: {p.max_download // MiB} MiB, capped to ~{p.download_seconds:g} s "
            f"at the slower relay's rate in a {p.probe // MiB} MiB probe: "
            f"{self.sizes[1] // MiB} MiB at 1 hop, {self.sizes[3] // MiB} MiB at 3 hops "
            "(the Go client cuts a tunnel at 10 s)")

    def throughput(self) -> None:
        p = self.profile
        for hops in (1, 3):
            size = self.sizes[hops]
            key, cpu_key = f"download_{hops}", f"cpu_per_gib_{hops}"
            self.results.row(key, f"one {size // MiB} MiB download, {hops} hop{_s(hops)}",
                             "MB/s", "higher")
            who = "backing relay" if hops == 1 else "3 relays summed"
            self.results.row(cpu_key, f"relay CPU per GiB relayed, {hops} hop{_s(hops)} "
                             f"({who})", "s/GiB", "lower", digits=2)
            rates: dict[str, list[float]] = {side.name: [] for side in self.sides}
            cpu: dict[str, float] = {side.name: 0.0 for side in self.sides}
            errors: dict[str, BaseException] = {}
            for _, side in self.alternating(p.runs):
                before = sum(cpu_seconds(pid) for pid in side.pids(hops))
                try:
                    timing = curl_fetch(self.curl, side.socks[hops],
                                        self.url(f"/bytes/{size}"), size)
                except (OSError, MeasureError, subprocess.SubprocessError) as exc:
                    errors[side.name] = exc
                    continue
                cpu[side.name] += sum(cpu_seconds(pid) for pid in side.pids(hops)) - before
                rates[side.name].append(size / timing["total"] / 1e6)
            for side in self.sides:
                got = rates[side.name]
                if side.name in errors:
                    self.results.fail(key, side.name, errors[side.name])
                    self.results.fail(cpu_key, side.name, errors[side.name])
                    continue
                self.results.set(key, side.name, statistics.median(got))
                self.results.set(cpu_key, side.name, cpu[side.name] / (len(got) * size / GiB))

    def sampled(self, key: str, runs: int, sample: Callable[[Side], float]) -> None:
        """Row `key`: the median of `runs` samples per side, the sides alternating; a side
        whose sample fails gets the error instead."""
        samples: dict[str, list[float]] = {side.name: [] for side in self.sides}
        for _, side in self.alternating(runs):
            if side.name in self.results.rows[key].errors:
                continue
            try:
                with gevent.Timeout(PHASE_TIMEOUT, MeasureError("took too long")):
                    samples[side.name].append(sample(side))
            except (OSError, MeasureError, subprocess.SubprocessError, ValueError) as exc:
                self.results.fail(key, side.name, exc)
                print(f"  {key} ({side.name}) failed: {exc}", flush=True)
        for side in self.sides:
            if side.name not in self.results.rows[key].errors:
                self.results.set(key, side.name, statistics.median(samples[side.name]))

    def ttfb(self) -> None:
        for hops in (1, 3):
            key = f"ttfb_{hops}"
            self.results.row(key, f"time to first byte, 1 KiB, {hops} hop{_s(hops)}", "ms",
                             "lower")
            self.sampled(key, self.profile.ttfb_samples, lambda side, hops=hops: 1000 * curl_fetch(
                self.curl, side.socks[hops], self.url(f"/bytes/{SMALL}"), SMALL)["ttfb"])

    def parallel(self) -> None:
        n = self.profile.parallel
        for hops in (1, 3):
            key = f"parallel_{hops}"
            self.results.row(key, f"{n} parallel 1 KiB downloads, {hops} hop{_s(hops)} (total)",
                             "ms", "lower")
            self.sampled(key, self.profile.runs, lambda side, hops=hops: 1000 * curl_parallel(
                self.curl, side.socks[hops], self.url(f"/bytes/{SMALL}"), n))

    def setup_rate(self) -> None:
        p = self.profile
        key, failed_key = "setup_rate", "setup_failed"
        self.results.row(key, f"stream setup rate, 1 hop ({p.setup_streams} x 1 KiB, "
                         f"{p.setup_inflight} in flight)", "streams/s", "higher", digits=0)
        self.results.row(failed_key, "  same: streams failed (all runs)", "streams", "lower",
                         digits=0)
        failed = {side.name: 0 for side in self.sides}

        def once(side: Side) -> float:
            elapsed, headers, n_failed = many_gets(side.socks[1], self.target, p.setup_streams,
                                                   p.setup_inflight, 30)
            failed[side.name] += n_failed
            return len(headers) / elapsed

        self.sampled(key, p.setup_runs, once)
        for side in self.sides:
            self.results.set(failed_key, side.name, failed[side.name])

    def burst(self) -> None:
        p = self.profile
        last, failed = "burst_last_header", "burst_failed"
        self.results.row(last, f"{p.burst:,} streams opened at once, 1 hop: last response "
                         "header", "s", "lower", digits=2)
        self.results.row(failed, "  same burst: streams failed (worst run)", "streams",
                         "lower", digits=0)
        lasts: dict[str, list[float]] = {side.name: [] for side in self.sides}
        fails: dict[str, list[int]] = {side.name: [] for side in self.sides}

        def once(side: Side) -> None:
            _, headers, n_failed = many_gets(side.socks[1], self.target, p.burst, p.burst, 20)
            fails[side.name].append(n_failed)
            lasts[side.name].append(max(headers) if headers else float("nan"))
            gevent.sleep(1.0)  # let both ends close the tunnels before the next burst

        for _, side in self.alternating(p.burst_runs):
            self.measure(last, side, lambda side=side: once(side))
        for side in self.sides:
            if side.name not in self.results.rows[last].errors:
                self.results.set(last, side.name, statistics.median(lasts[side.name]))
                self.results.set(failed, side.name, max(fails[side.name]))
            else:
                self.results.fail(failed, side.name, MeasureError("the burst failed"))

    def slow_streams(self) -> None:
        """Memory with many open streams on a backing relay that carried nothing before,
        through our Python client (the Go client cuts its tunnels at 10 s):
        (PSS with N - PSS idle) / N."""
        first, second = self.profile.slow_steps
        self.results.row("pss_fresh", "relay memory idle (an unused backing relay)", "MiB",
                         "lower")
        for n in (first, second):
            self.results.row(f"pss_{n}", f"  same relay with {n:,} slow streams", "MiB",
                             "lower")
            self.results.row(f"per_stream_{n}", f"  per stream, {n:,} slow streams", "KiB",
                             "lower")
        target = f"{self.target[0]}:{self.target[1]}"
        for side in self.sides:
            streams = SlowStreams(side.home(MEMORY), target, Wallet(self.contract_url))
            try:
                before = pss_kib(side.pid(MEMORY))
                self.results.set("pss_fresh", side.name, before / KiB)
                for n in (first, second):
                    self.measure(f"pss_{n}", side, lambda side=side, n=n, streams=streams:
                                 self._slow_step(side, streams, n))
                    value = self.results.rows[f"pss_{n}"].values.get(side.name)
                    per_stream = None if value is None else (value * KiB - before) / n
                    self.results.set(f"per_stream_{n}", side.name, per_stream)
                    if value is None:
                        self.results.fail(f"per_stream_{n}", side.name,
                                          MeasureError("the slow streams failed"))
                        break
            finally:
                streams.close()
            gevent.sleep(1.0)
        self.results.notes.append(
            f"slow streams: our Python circuit client (testing/circuit.py), 1 hop straight to "
            f"a backing relay that carried nothing before, {STREAMS_PER_CONNECTION} streams "
            "per TLS connection, each a GET of a target that sends a byte a second; per "
            "stream = (PSS with N - PSS idle) / N")

    def _slow_step(self, side: Side, streams: SlowStreams, total: int) -> float:
        streams.open(total - len(streams.streams))
        if streams.failed:
            raise MeasureError(f"{streams.failed} of {len(streams.streams)} slow streams failed")
        gevent.sleep(1.0)  # the relay has settled its buffers
        return pss_kib(side.pid(MEMORY)) / KiB

    # The whole run.

    def run(self) -> Results:
        p = self.profile
        _step("starting the fake contract, the target and the relays")
        self.start()
        gevent.sleep(2.0)  # started is not yet idle: let the workers settle
        self.memory("pss_idle", "relay memory idle (the circuits' backing relay)")
        _step("starting the clients")
        self.start_clients()
        if self.curl:
            self.warm_up()
            _step("sizing the large download")
            self.size_downloads()
            _step(f"large downloads: {p.runs} runs per side at 1 and 3 hops")
            self.throughput()
            _step(f"time to first byte: {p.ttfb_samples} samples per side at 1 and 3 hops")
            self.ttfb()
            _step(f"{p.parallel} parallel downloads: {p.runs} runs per side at 1 and 3 hops")
            self.parallel()
        else:
            self.results.notes.append("curl is not installed: no download rows")
        _step(f"stream setup rate: {p.setup_runs} runs of {p.setup_streams} streams per side")
        self.setup_rate()
        _step(f"{p.burst} streams at once: {p.burst_runs} runs per side")
        self.burst()
        self.stop_clients()
        gevent.sleep(2.0)
        self.memory("pss_after", "  same relay after the bench, clients stopped")
        _step(f"{p.slow_steps[0]} and {p.slow_steps[1]} slow streams per side")
        self.slow_streams()
        return self.results


def _join(jobs: list[gevent.Greenlet]) -> None:
    """Wait for start-up jobs; raise what one raised, or a timeout (killing the rest)."""
    gevent.joinall(jobs, timeout=PHASE_TIMEOUT)
    unfinished = [job for job in jobs if not job.ready()]
    gevent.killall(unfinished)
    for job in jobs:
        if not job.successful():
            raise job.exception or MeasureError(f"start-up took over {PHASE_TIMEOUT:g} s")


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _step(text: str) -> None:
    print(f"- {text}", flush=True)


@contextmanager
def start_target(root: str) -> Iterator[tuple[str, int]]:
    """The HTTP target (bench_target) as a subprocess; yields its (host, port)."""
    ready = os.path.join(root, "target.address")
    with ready_subprocess(["wireleap_relay.testing.bench_target", "--ready-file", ready],
                          ready, "the bench target", timeout=30) as address:
        host, port = address.rsplit(":", 1)
        yield host, int(port)


# Sharetoken submission (ours only, not side by side): tokens per second to a slow contract,
# and whether stream setup waits for it.

def _echo(sock: socket.socket, _addr: tuple) -> None:
    try:
        with gevent.Timeout(60):
            while data := sock.recv(4096):
                sock.sendall(data)
    except (OSError, gevent.Timeout):
        pass


def _timed_echo(chain: list, target: str, servicekey: tuple, pool: circuit.ConnectionPool
                ) -> float:
    start = time.perf_counter()
    pipe = circuit.dial(chain, target, "tcp", *servicekey, pool=pool)
    try:
        pipe.settimeout(30)
        pipe.sendall(b"e\n")
        if not pipe.recv(16):
            raise MeasureError("no echo")
    finally:
        pipe.close()
    return (time.perf_counter() - start) * 1000


def submission(root: str, tokens: int = 500, answer_delay: float = 0.05) -> dict:
    """Tokens per second our relay submits to a contract answering in `answer_delay`, and
    1-hop setup latency while it does."""
    with fake_contract(root, "--servicekey-duration", "15", "--submission-window", "3600",
                       "--submit-delay", str(answer_delay)) as url:
        relay = make_home(root, "submitter", url, "backing", auto_submit_interval="1s")
        proc = RelayProcess(relay)
        server = StreamServer(("127.0.0.1", 0), _echo)
        try:
            proc.start()
            server.start()
            target = f"127.0.0.1:{server.address[1]}"
            chain, pool = [(relay.address, relay.pubkey)], circuit.ConnectionPool()
            wallet = Wallet(url, margin=0)
            servicekey = wallet.current()  # one servicekey for all the tokens
            settlement_open = servicekey[1].settlement_open
            for _ in range(0, tokens, 50):
                gevent.joinall([gevent.spawn(_timed_echo, chain, target, servicekey, pool)
                                for _ in range(50)], raise_error=True, timeout=PHASE_TIMEOUT)
            deadline = time.monotonic() + PHASE_TIMEOUT
            while time.time() < settlement_open + 1 and time.monotonic() < deadline:
                gevent.sleep(0.1)
            idle = [_timed_echo(chain, target, wallet.current(), pool) for _ in range(20)]
            busy: list[float] = []
            start = first = None
            while (done := _accepted(url)) < tokens and time.monotonic() < deadline:
                if done and start is None:
                    start, first = time.perf_counter(), done
                if start is not None:
                    busy.append(_timed_echo(chain, target, wallet.current(), pool))
                gevent.sleep(0.05)
            if start is None or not busy or done < tokens:
                raise MeasureError(f"only {done} of {tokens} tokens accepted in time")
            rate = (done - first) / (time.perf_counter() - start)
            pool.close()
        finally:
            server.stop()
            proc.stop()
    return {"tokens_per_s": round(rate, 1), "answer_delay_ms": answer_delay * 1000,
            "setup_idle_ms": round(statistics.median(idle), 2),
            "setup_during_submission_ms": round(statistics.median(busy), 2),
            "setup_during_submission_max_ms": round(max(busy), 2)}


def _accepted(contract_url: str) -> int:
    return len(requests.get(contract_url + "/_fake/state", timeout=30).json()["tokens"])


# Output.

def machine() -> dict[str, str]:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cores": str(os.cpu_count()), "cpu": model,
            "kernel": platform.release(), "python": platform.python_version()}


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr \
        else "unknown"


def source_state() -> str:
    """The commit of the relay code measured, and whether it had uncommitted changes."""
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--",
                                "wireleap_relay", ":!wireleap_relay/testing"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    changed = [line[3:] for line in dirty.stdout.splitlines()]
    return head.stdout.strip() + (f" + uncommitted changes in {', '.join(changed)}"
                                  if changed else "")


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "failed"
    if value != value:  # NaN
        return "-"
    return f"{value:,.{digits}f}"


def table(results: Results, go: bool) -> list[str]:
    width = max(len(row.label) for row in results.rows.values()) + 2
    lines = [f"{'':<{width}}{'unit':<10}{'ours':>10}{'Go':>10}{'ours/Go':>9}  better  ours is",
             "-" * (width + 63)]
    for _, row in results.ordered():
        ours = _fmt(row.values.get("ours"), row.digits)
        other = _fmt(row.values.get("go"), row.digits) if go else "n/a"
        ratio = row.ratio()
        verdict = ""
        if ratio is not None and ratio == ratio:
            ahead = ratio >= 1 if row.better == "higher" else ratio <= 1
            verdict = "ahead" if ahead else "behind"
        elif go and row.values.get("ours") is not None and row.values.get("go") == 0:
            verdict = "even" if row.values["ours"] == 0 else "behind"
        lines.append(f"{row.label:<{width}}{row.unit:<10}{ours:>10}{other:>10}"
                     f"{(f'{ratio:.2f}' if ratio is not None else '-'):>9}  "
                     f"{row.better:<6}  {verdict}")
    return lines


def report(results: Results, meta: dict, submission_result: dict | None) -> str:
    m = meta["machine"]
    title = ("this project's relay vs the Go relay 0.6.1, side by side in one run" if meta["go"]
             else "this project's relay ALONE (the Go peers are missing; nothing to compare)")
    out = [f"wireleap-relay benchmark ({meta['profile']}): {title}",
           f"machine: {m['cores']} cores, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}",
           f"relay code: {meta['source']}",
           f"client: {meta['client']}",
           "target: local HTTP server on 127.0.0.1 (bench_target); our relays: master + "
           f"{meta['workers']} workers; the Go relay: one process",
           "figures: medians; ratio = ours/Go; 'better' says which direction of the ratio is "
           "better; memory = PSS of all the backing relay's processes", ""]
    out += table(results, meta["go"])
    out += [""] + [f"note: {note}" for note in results.notes]
    for key, row in results.rows.items():
        for side, error in row.errors.items():
            out.append(f"failed: {key} ({side}): {error}")
    if submission_result:
        s = submission_result
        out.append(f"\nsubmission (ours only): {s['tokens_per_s']} tokens/s to a contract "
                   f"answering in {s['answer_delay_ms']:g} ms; 1-hop circuit setup "
                   f"{s['setup_idle_ms']} ms idle, {s['setup_during_submission_ms']} ms during "
                   f"submission (max {s['setup_during_submission_max_ms']} ms)")
    out.append(f"\nruntime: {meta['runtime_s']:.0f} s; other processes used about "
               f"{100 * meta['others_cpu_share']:.0f}% of the machine's CPU meanwhile; load "
               f"average (1 min) {meta['load_before'][0]:.2f} before, "
               f"{meta['load_after'][0]:.2f} after")
    return "\n".join(out)


def find_peers(peers: str) -> str | None:
    if all(os.access(os.path.join(peers, name), os.X_OK)
           for name in (CLIENT_BINARY, RELAY_BINARY)):
        return os.path.abspath(peers)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wireleap_relay.testing bench")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one run: checks that every row yields numbers")
    parser.add_argument("--peers", default=DEFAULT_PEERS,
                        help="folder of the Go `wireleap` and `wireleap-relay` binaries")
    parser.add_argument("--json", default=os.path.join("build", "bench.json"),
                        help="where the results go as JSON")
    parser.add_argument("--keep", action="store_true",
                        help="keep the relays' homes and logs (a temporary folder)")
    args = parser.parse_args(argv)
    profile = SMOKE if args.smoke else FULL
    peers = find_peers(args.peers)
    curl = shutil.which("curl")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, _terminated)
    if peers is None:
        print(f"The Go peers are missing ({args.peers} has no {CLIENT_BINARY} and "
              f"{RELAY_BINARY}): measuring our relays alone, through our own Python SOCKS5 + "
              "circuit client, which does not compare with the Go client.", flush=True)
    curl_version = " ".join(_version(["curl", "-V"]).split()[:2])
    client = (f"the Go client 0.6.3 (wireleap + wireleap_socks) and {curl_version} "
              "--socks5-hostname; many streams at once: a gevent SOCKS5 driver in the bench"
              if peers else "our Python SOCKS5 + circuit client (the Go peers are missing)")
    started, load_before = time.monotonic(), os.getloadavg()
    busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
    submission_result = None
    root = tempfile.mkdtemp(prefix="wl-bench-")
    try:
        with ExitStack() as stack, gevent.Timeout(profile.timeout, MeasureError(
                f"the bench took longer than {profile.timeout:g} s")):
            bench = Bench(profile, peers, curl, root, stack)
            try:
                results = bench.run()
            finally:
                stack.close()  # every process, before the next phase or on failure
            if profile.submission:
                _step("sharetoken submission (ours only)")
                try:
                    submission_result = submission(os.path.join(root, "submission"))
                except (OSError, MeasureError, RuntimeError) as exc:
                    results.notes.append(f"submission failed: {exc}")
    finally:
        if args.keep:
            print(f"homes and logs kept in {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - started
    others = (machine_busy_seconds() - busy_before) - (own_cpu_seconds() - own_before)
    meta = {"profile": profile.name, "machine": machine(), "client": client,
            "others_cpu_share": max(0.0, others) / (elapsed * (os.cpu_count() or 1)),
            "source": source_state(),
            "go": peers is not None, "workers": os.cpu_count(),
            "runtime_s": elapsed, "sizes": bench.sizes,
            "load_before": load_before, "load_after": os.getloadavg()}
    print()
    print(report(results, meta, submission_result), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "notes": results.notes, "submission": submission_result,
                   "rows": {key: {"label": row.label, "unit": row.unit, "better": row.better,
                                  "ours": row.values.get("ours"), "go": row.values.get("go"),
                                  "ratio": row.ratio(), "errors": row.errors}
                            for key, row in results.ordered()}}, f, indent=2)
    return 0


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
