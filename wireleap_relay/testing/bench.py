"""`make bench`: throughput, latency, concurrency and memory of relays of this project,
each against a baseline measured in the same run (the same transfer without any relay).

Everything runs on 127.0.0.1: the fake contract and three relays as subprocesses, the
target and the client in this process. Figures are medians of several runs; what matters
is the ratio to the baseline, since absolute numbers depend on the machine.
"""

import json
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable

import gevent
import requests
from gevent.server import StreamServer

from wireleap_relay.testing import circuit
from wireleap_relay.testing.devnet import fake_contract, running
from wireleap_relay.testing.relayproc import RelayProcess, make_home
from wireleap_relay.testing.servicekey import Wallet

MiB = 1 << 20
BLOCK = os.urandom(MiB)  # incompressible, like real tunnelled TLS
TRANSFER = 64 * MiB
RUNS = 5
LATENCY_SAMPLES = 30
CONCURRENT = 100
CONCURRENT_EACH = MiB


def _serve(sock: socket.socket, _addr: tuple) -> None:
    """Echo lines starting with 'e', or send N bytes for a line 'N'."""
    try:
        buf = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.startswith(b"e"):
                    sock.sendall(line + b"\n")
                else:
                    _send_n(sock, int(line))
    except OSError:
        pass


def _send_n(sock: socket.socket, size: int) -> None:
    view = memoryview(BLOCK)
    while size > 0:
        sock.sendall(view[:min(size, MiB)])
        size -= MiB


def _recv_n(pipe, size: int) -> None:
    got = 0
    while got < size:
        data = pipe.recv(MiB)
        if not data:
            raise ConnectionError(f"ended after {got} of {size} bytes")
        got += len(data)


def _recv_line(pipe) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        data = pipe.recv(4096)
        if not data:
            raise ConnectionError("ended")
        line += data
    return line


class Paths:
    """Ways to reach the target: directly, or through 1 or 3 relays."""

    def __init__(self, target: str, hops: list, wallet: Wallet):
        self.target = target
        self.hops = hops
        self.wallet = wallet
        self.pool = circuit.ConnectionPool()

    def open(self, n_hops: int):
        if n_hops == 0:
            host, port = self.target.rsplit(":", 1)
            sock = socket.create_connection((host, int(port)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        chain = self.hops[-1:] if n_hops == 1 else self.hops
        pipe = circuit.dial(chain, self.target, "tcp", *self.wallet.current(), pool=self.pool)
        pipe.settimeout(60)
        return pipe


def _median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def throughput(paths: Paths, n_hops: int) -> float:
    """MB/s of one 64 MiB download over one stream."""
    def once() -> float:
        pipe = paths.open(n_hops)
        start = time.perf_counter()
        pipe.sendall(b"%d\n" % TRANSFER)
        _recv_n(pipe, TRANSFER)
        elapsed = time.perf_counter() - start
        pipe.close()
        return TRANSFER / elapsed / 1e6
    return _median_of(RUNS, once)


def setup_latency(paths: Paths, n_hops: int) -> float:
    """ms from opening a connection or circuit to the first echoed line."""
    def once() -> float:
        start = time.perf_counter()
        pipe = paths.open(n_hops)
        pipe.sendall(b"e\n")
        _recv_line(pipe)
        elapsed = time.perf_counter() - start
        pipe.close()
        return elapsed * 1000
    return _median_of(LATENCY_SAMPLES, once)


def round_trip(paths: Paths, n_hops: int) -> float:
    """ms for one small echo on an established connection or circuit."""
    pipe = paths.open(n_hops)
    samples = []
    for _ in range(LATENCY_SAMPLES * 3):
        start = time.perf_counter()
        pipe.sendall(b"e\n")
        _recv_line(pipe)
        samples.append((time.perf_counter() - start) * 1000)
    pipe.close()
    return statistics.median(samples)


def concurrency(paths: Paths, n_hops: int) -> float:
    """Aggregate MB/s of 100 concurrent streams, each downloading 1 MiB."""
    def one() -> None:
        pipe = paths.open(n_hops)
        pipe.sendall(b"%d\n" % CONCURRENT_EACH)
        _recv_n(pipe, CONCURRENT_EACH)
        pipe.close()

    def once() -> float:
        start = time.perf_counter()
        gevent.joinall([gevent.spawn(one) for _ in range(CONCURRENT)], raise_error=True)
        return CONCURRENT * CONCURRENT_EACH / (time.perf_counter() - start) / 1e6
    return _median_of(3, once)


def submission(root: str, tokens: int = 500, answer_delay: float = 0.05) -> dict:
    """Tokens per second submitted to a slow contract, and stream setup latency while that
    runs against the same relay idle: submission must not hold up new streams."""
    with fake_contract(root, "--servicekey-duration", "15", "--submission-window", "3600",
                       "--submit-delay", str(answer_delay)) as url:
        relay = make_home(root, "submitter", url, "backing", auto_submit_interval="1s")
        proc = RelayProcess(relay).start()
        try:
            server = StreamServer(("127.0.0.1", 0), _serve)
            server.start()
            paths = Paths(f"127.0.0.1:{server.address[1]}", [(relay.address, relay.pubkey)],
                          Wallet(url, margin=0))
            key, contract = paths.wallet.current()
            for _ in range(0, tokens, 50):
                gevent.joinall([gevent.spawn(_one_echo, paths, key, contract)
                                for _ in range(50)], raise_error=True)
            while time.time() < contract.settlement_open + 1:
                gevent.sleep(0.1)
            idle = [_timed_echo(paths) for _ in range(LATENCY_SAMPLES)]
            busy, start = [], None
            while (done := _accepted(url)) < tokens:
                if done and start is None:
                    start, first = time.perf_counter(), done
                if start is not None:
                    busy.append(_timed_echo(paths))
                gevent.sleep(0.05)
            rate = (tokens - first) / (time.perf_counter() - start)
            server.stop()
        finally:
            proc.stop()
    return {"tokens_per_s": round(rate, 1), "answer_delay_ms": answer_delay * 1000,
            "setup_idle_ms": round(statistics.median(idle), 2),
            "setup_during_submission_ms": round(statistics.median(busy), 2),
            "setup_during_submission_max_ms": round(max(busy), 2)}


def _one_echo(paths: "Paths", key, contract) -> None:
    pipe = circuit.dial(paths.hops, paths.target, "tcp", key, contract, pool=paths.pool)
    pipe.settimeout(60)
    pipe.sendall(b"e\n")
    _recv_line(pipe)
    pipe.close()


def _timed_echo(paths: "Paths") -> float:
    start = time.perf_counter()
    pipe = paths.open(1)
    pipe.sendall(b"e\n")
    _recv_line(pipe)
    pipe.close()
    return (time.perf_counter() - start) * 1000


def _accepted(contract_url: str) -> int:
    return len(requests.get(contract_url + "/_fake/state", timeout=30).json()["tokens"])


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """The memory of a relay: its master process and all its workers."""
    total = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                total += int(line.split()[1])
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return total + sum(rss_kib(int(child), field) for child in f.read().split())


def main() -> int:
    server = StreamServer(("127.0.0.1", 0), _serve)
    server.start()
    target = f"127.0.0.1:{server.address[1]}"
    results: dict = {}
    with tempfile.TemporaryDirectory() as root, running(root) as net:
        paths = Paths(target, [(r.address, r.pubkey) for r in net.relays],
                      Wallet(net.contract_url))
        pids = _relay_pids(root)
        results["idle_rss_kib"] = {role: rss_kib(pid) for role, pid in pids.items()}
        for name, measure in (("throughput_MBps", throughput), ("setup_ms", setup_latency),
                              ("rtt_ms", round_trip), ("concurrent_MBps", concurrency)):
            results[name] = {f"{n}-hop" if n else "direct": round(measure(paths, n), 3)
                             for n in (0, 1, 3)}
        results["peak_rss_kib"] = {role: rss_kib(pid, "VmHWM") for role, pid in pids.items()}
    server.stop()
    with tempfile.TemporaryDirectory() as root:
        results["submission"] = submission(root)
    _report(results)
    os.makedirs("build", exist_ok=True)
    with open("build/bench.json", "w") as f:
        json.dump(results, f, indent=2)
    return 0


def _relay_pids(root: str) -> dict[str, int]:
    pids = {}
    for role in ("fronting", "entropic", "backing"):
        with open(os.path.join(root, role, "wireleap-relay.pid")) as f:
            pids[role] = int(f.read())
    return pids


def _report(results: dict) -> None:
    print(f"wireleap-relay benchmark (medians; {RUNS} runs of {TRANSFER // MiB} MiB, "
          f"{LATENCY_SAMPLES} setup samples, {CONCURRENT} x {CONCURRENT_EACH // MiB} MiB "
          "concurrent; baseline = direct TCP to the same target)\n")
    print(f"{'metric':<22}{'direct':>10}{'1-hop':>10}{'3-hop':>10}"
          f"{'1-hop/direct':>14}{'3-hop/direct':>14}")
    for name in ("throughput_MBps", "concurrent_MBps", "setup_ms", "rtt_ms"):
        row = results[name]
        base = row["direct"]
        print(f"{name:<22}{base:>10.2f}{row['1-hop']:>10.2f}{row['3-hop']:>10.2f}"
              f"{row['1-hop'] / base:>14.2f}{row['3-hop'] / base:>14.2f}")
    print("\nrelay memory, master + workers (KiB)   idle RSS   peak RSS")
    for role, idle in results["idle_rss_kib"].items():
        print(f"  {role:<36}{idle:>10}{results['peak_rss_kib'][role]:>11}")
    sub = results["submission"]
    print(f"\nsubmission: {sub['tokens_per_s']} tokens/s to a contract answering in "
          f"{sub['answer_delay_ms']:g} ms; 1-hop circuit setup {sub['setup_idle_ms']} ms idle, "
          f"{sub['setup_during_submission_ms']} ms during submission "
          f"(max {sub['setup_during_submission_max_ms']} ms)")
