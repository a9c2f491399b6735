"""Shared pieces for integration tests: a fake contract in this process, relays as real
subprocesses, and plain TCP/UDP targets on 127.0.0.1."""

import functools
import glob
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import gevent
import gevent.event
import pytest
from gevent.server import DatagramServer, StreamServer

from wireleap_relay.home import HOME_ENV, Home
from wireleap_relay.testing import circuit
from wireleap_relay.testing.fake_contract import FakeContract
from wireleap_relay.testing.h2client import connect
from wireleap_relay.testing.relayproc import RelayProcess, make_home
from wireleap_relay.testing.servicekey import Wallet
from wireleap_relay.wire.payload import InitPayload, Remote
from wireleap_relay.wire.sharetoken import Sharetoken

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Test-only speed-ups of the relay's fixed intervals (heartbeat 5 min, retry pause 5 s).
FAST = {"WIRELEAP_HEARTBEAT_INTERVAL": "0.3", "WIRELEAP_RETRY_PAUSE": "0.1"}


def run_cli(home: Home, *args: str, env: dict | None = None,
            command: list[str] | None = None) -> subprocess.CompletedProcess:
    """The relay's command line as an operator runs it, in `home`."""
    full_env = dict(os.environ, **(env or {}), **{HOME_ENV: home.root}, PYTHONPATH=ROOT)
    return subprocess.run((command or [sys.executable, "-m", "wireleap_relay"]) + list(args),
                          capture_output=True, text=True, env=full_env, timeout=120)


def socks_get(socks: tuple[str, int], host: str, port: int, path: str) -> bytes:
    """HTTP/1.0 GET through a SOCKS5 proxy, resolving the name at the proxy side."""
    with socket.create_connection(socks, timeout=30) as s:
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
        name = host.encode()
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port))
        reply = s.recv(10)
        assert reply[:2] == b"\x05\x00", reply
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def two_worker_relay(tmp_path, contract) -> Iterator[RelayProcess]:
    """A fixture's body: a backing relay with two workers and quick heartbeats, stopped at
    the end."""
    proc = RelayProcess(make_home(str(tmp_path), "relay", contract.url, "backing", workers=2),
                        env=FAST).start()
    yield proc
    proc.stop()


def wait_for(condition, timeout: float = 20.0) -> bool:
    """Poll until `condition()` holds; False if it never did within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def make_fake(tmp_path):
    """Fake contracts for one test, each with its own state folder (a given name or path
    reuses one, as a restarted contract would), all stopped at the end."""
    started: list[FakeContract] = []

    def make(name: "str | os.PathLike | None" = None, **settings) -> FakeContract:
        folder = tmp_path / (name or f"contract{len(started)}") if not \
            isinstance(name, os.PathLike) else name
        fake = FakeContract(folder, **settings).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """`make build`'s single file (no upgrade support), built once per session."""
    out = tmp_path_factory.mktemp("build")
    subprocess.run([os.path.join(ROOT, "contrib", "build-bin.sh"), str(out)], check=True,
                   cwd=ROOT, capture_output=True)
    return out


@pytest.fixture(scope="session")
def contract(tmp_path_factory):
    fake = FakeContract(str(tmp_path_factory.mktemp("contract")), servicekey_duration=3600,
                        submission_window=3600).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def wallet(contract):
    return Wallet(contract.url)


class Relays:
    """Starts relays on demand; stops them all at the end of the session."""

    def __init__(self, root: str, contract_url: str):
        self.root = root
        self.contract_url = contract_url
        self.procs: list[RelayProcess] = []

    def start(self, name: str, role: str, path: str = "/", **settings) -> RelayProcess:
        home = make_home(self.root, name, self.contract_url, role, path=path, **settings)
        proc = RelayProcess(home).start()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()


@pytest.fixture(scope="session")
def relays(tmp_path_factory, contract):
    r = Relays(str(tmp_path_factory.mktemp("relays")), contract.url)
    yield r
    r.stop_all()


@pytest.fixture(scope="session")
def circuit3(relays):
    """A fronting, an entropic and a backing relay, as the Go client would chain them."""
    return [relays.start("fronting", "fronting", path="/wireleap"),
            relays.start("entropic", "entropic"),
            relays.start("backing", "backing")]


def hops(procs: list[RelayProcess]) -> list[tuple[str, bytes]]:
    return [(p.relay.address, p.relay.pubkey) for p in procs]


def _echo(sock: socket.socket, _addr) -> None:
    try:
        while data := sock.recv(65536):
            sock.sendall(data)
    except OSError:
        pass


def tcp_server(handler) -> Iterator[str]:
    """Serve `handler(sock, addr)` on a loopback port for a fixture; yields "host:port"."""
    server = StreamServer(("127.0.0.1", 0), handler)
    server.start()
    yield f"127.0.0.1:{server.address[1]}"
    server.stop()


@pytest.fixture(scope="session")
def echo_server():
    yield from tcp_server(_echo)


@pytest.fixture(scope="session")
def udp_echo():
    server = DatagramServer(("127.0.0.1", 0), lambda data, addr: server.sendto(data, addr))
    server.start()
    yield f"127.0.0.1:{server.address[1]}"
    server.stop()


def _source(sock: socket.socket, _addr) -> None:
    """Reads a decimal size and a newline, then sends that many pseudo-random bytes."""
    try:
        line = b""
        while not line.endswith(b"\n"):
            data = sock.recv(1)
            if not data or len(line) > 32:
                return  # the client left (a reset stream), or is no client of ours
            line += data
        size = int(line)
        block = pattern_block()
        while size > 0:
            sock.sendall(block[:size])
            size -= len(block)
    except OSError:
        pass
    finally:
        sock.close()


def pattern_block() -> bytes:
    return hashlib.sha256(b"wireleap").digest() * 4096  # 128 KiB, not compressible by TLS


@pytest.fixture(scope="session")
def source_server():
    yield from tcp_server(_source)


def recv_exactly(stream, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        data = stream.recv(min(1 << 20, size - got))
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def read_to_end(stream) -> bytes:
    parts = []
    while data := stream.recv(1 << 20):
        parts.append(data)
    return b"".join(parts)


def spawn_sender(stream, data: bytes) -> gevent.Greenlet:
    return gevent.spawn(stream.sendall, data)


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


REQUIRE_EXTERNAL_ENV = "WIRELEAP_REQUIRE_EXTERNAL"


def external_missing(reason: str) -> None:
    """Skip a test that needs something outside this project (a web server, a module of it)
    with `reason`; fail instead when $WIRELEAP_REQUIRE_EXTERNAL is set, as CI does."""
    if os.environ.get(REQUIRE_EXTERNAL_ENV):
        pytest.fail(f"{reason} (and {REQUIRE_EXTERNAL_ENV} is set)", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str) -> str:
    """The path of program `name` (PATH, then the sbin directories, where Debian puts nginx
    and apache2); skips, or fails under $WIRELEAP_REQUIRE_EXTERNAL, when it is missing."""
    found = shutil.which(name, path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]))
    if found is None:
        external_missing(f"{name} is not installed")
    return found


def _hops(relay) -> list[tuple[str, bytes]]:
    """A RelayProcess or a RelayHome as a 1-hop circuit."""
    home = getattr(relay, "relay", relay)
    return [(home.address, home.pubkey)]


def echo_once(relay, wallet, target: str, data: bytes = b"ping") -> bool:
    """`data` through a 1-hop circuit of its own to an echo `target`: did it come back?"""
    pipe = circuit.dial(_hops(relay), target, "tcp", *wallet.current(),
                        pool=circuit.ConnectionPool())
    pipe.settimeout(20)
    pipe.sendall(data)
    ok = recv_exactly(pipe, len(data)) == data
    pipe.close()
    return ok


def echo_byte_then_replay(relay, wallet, target: str) -> str:
    """A stream with a fresh token echoes one byte from `target`; the same payload sent
    again is refused. The refusal's status description."""
    payload = payload_for(relay, wallet, f"target://{target}")
    conn = connect(relay.relay.address)
    stream = conn.open_stream(payload)
    stream.settimeout(20)
    stream.sendall(b"x")
    assert stream.recv(1) == b"x"
    conn.close()
    conn = connect(relay.relay.address)
    replay = conn.open_stream(payload)
    replay.settimeout(20)
    read_to_end(replay)
    conn.close()
    return replay.status.description


def warm_up(relay, wallet, target: str, streams: int = 12) -> None:
    """Streams at once through `relay` until its pools are at full size (the token
    store's threads), so that a baseline taken next does not count their growth."""
    for conn in [connect(relay.relay.address) for _ in range(2)]:
        opened = []
        for _ in range(streams // 2):
            stream = conn.open_stream(payload_for(relay, wallet, f"target://{target}"))
            stream.settimeout(20)
            stream.sendall(b"warm")
            opened.append(stream)
        assert all(recv_exactly(stream, 4) == b"warm" for stream in opened)
        conn.close()


def payload_for(relay, wallet, to: str, protocol: str = "tcp", **changes) -> str:
    """A CONNECT payload through `relay` to `to`, with a fresh token from `wallet`."""
    key, contract = wallet.current()
    token = Sharetoken.mint(key, relay.relay.pubkey, contract, int(time.time()))
    obj = json.loads(InitPayload("CONNECT", protocol, Remote.parse(to), token,
                                 "0.2.0").to_json())
    obj.update(changes)
    return json.dumps(obj)


def slow_download(relay, wallet, source: str, size: int,
                  per_read: int = 256 * 1024) -> gevent.Greenlet:
    """A transfer that takes a while: the client reads slowly, so flow control holds the
    relay back, and the stream stays open across whatever the test does meanwhile. The
    greenlet's value is the number of bytes that arrived intact (the source's pattern)."""
    pipe = circuit.dial(_hops(relay), source, "tcp", *wallet.current(),
                        pool=circuit.ConnectionPool())
    pipe.settimeout(30)
    pipe.sendall(b"%d\n" % size)
    block = pattern_block()

    def run() -> int:
        got = 0
        while got < size:
            burst = recv_exactly(pipe, min(per_read, size - got))
            if not burst:
                break
            start = got % len(block)
            expected = (block * 3)[start:start + len(burst)]
            assert burst == expected, f"corrupt data at byte {got}"
            got += len(burst)
            gevent.sleep(0.02)  # about 10 MB/s at most: a few seconds for the test
        return got
    return gevent.spawn(run)


class KeepConnecting:
    """New circuits through `relay`, one after the other, until told to stop: whatever is
    refused or cut on the way is recorded."""

    def __init__(self, relay, wallet, target: str):
        self.opened: list[bool] = []
        self.failed: list[str] = []
        self._done = gevent.event.Event()
        self._greenlet = gevent.spawn(self._run, relay, wallet, target)

    def _run(self, relay, wallet, target: str) -> None:
        while not self._done.is_set():
            try:
                self.opened.append(echo_once(relay, wallet, target))
            except Exception as exc:  # any refusal or cut is what the tests look for
                self.failed.append(repr(exc))

    def assert_none_failed(self) -> None:
        self._done.set()
        self._greenlet.get(timeout=30)
        assert self.failed == []
        assert len(self.opened) >= 10 and all(self.opened)


class Gpg:
    """A throwaway GnuPG home with the release key and a rogue key."""

    def __init__(self, home: str) -> None:
        self.home = home
        self.release = self.new_key("Relay Release Test <release@example.invalid>")
        self.rogue = self.new_key("Rogue <rogue@example.invalid>")

    def run(self, *args: str, data: bytes | None = None) -> bytes:
        return subprocess.run(["gpg", "--batch", *args], input=data, check=True,
                              capture_output=True, env=dict(os.environ, GNUPGHOME=self.home),
                              timeout=60).stdout

    def new_key(self, uid: str) -> str:
        self.run("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        listing = self.run("--with-colons", "--list-keys", uid).decode()
        return next(line.split(":")[9] for line in listing.splitlines()
                    if line.startswith("fpr:"))

    def clearsign(self, text: bytes, key: str) -> bytes:
        return self.run("--local-user", key, "--clearsign", data=text)

    def close(self) -> None:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], capture_output=True,
                       env=dict(os.environ, GNUPGHOME=self.home), check=False)


@pytest.fixture(scope="module")
def gpg():
    """A release key and a rogue key, for the tests of one module."""
    require_binary("gpg")
    require_binary("gpgv")
    home = tempfile.mkdtemp(prefix="wl-gnupg-")  # short: gpg-agent's socket lives there
    keys = Gpg(home)
    yield keys
    keys.close()
    shutil.rmtree(home, ignore_errors=True)


CHROOT_ENV = "WIRELEAP_PYTHON314_CHROOT"


@dataclass(frozen=True)
class Interpreter:
    """How to run one Python, and the filesystem root it sees (a chroot's folder)."""

    version: str
    command: tuple[str, ...]
    root: str = "/"

    def folder(self, tmp_path) -> tuple[str, str]:
        """A fresh folder this interpreter can see: (path here, path as it sees it)."""
        if self.root == "/":
            return str(tmp_path), str(tmp_path)
        inside = f"/tmp/wl-test-{uuid.uuid4().hex[:12]}"
        outside = os.path.join(self.root, inside.lstrip("/"))
        os.makedirs(outside)
        return outside, inside

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != HOME_ENV}
        return subprocess.run([*self.command, *args], capture_output=True, text=True,
                              env=env, timeout=timeout, cwd="/")


def _minor_version(python: str) -> str | None:
    try:
        said = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return said.stdout.strip() if said.returncode == 0 else None


@functools.cache
def _find_interpreters() -> dict[str, Interpreter]:
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(os.path.join(pyenv, "versions", "*", "bin", "python[23].*")))
    candidates += [found for minor in range(6, 15)
                   if (found := shutil.which(f"python3.{minor}")) and "/shims/" not in found]
    found: dict[str, Interpreter] = {}
    for python in candidates:
        if python.endswith("-config"):
            continue
        version = _minor_version(python)
        if version and version not in found:
            found[version] = Interpreter(version, (python,))
    chroot = os.environ.get(CHROOT_ENV)
    if chroot and "3.14" not in found:
        found["3.14"] = Interpreter("3.14", ("chroot", chroot, "/usr/bin/python3.14"), chroot)
    return found


def interpreter(version: str) -> Interpreter:
    """Python `version` ("3.12"), as the CI image has them: pyenv's (2.7, 3.6-3.13), PATH's,
    and CPython 3.14 in a Debian sid chroot made by contrib/python314-chroot.sh and named
    by $WIRELEAP_PYTHON314_CHROOT (.ci/run makes one). Skips, or fails in CI, without it."""
    found = _find_interpreters()
    if version not in found:
        hint = (f"; run contrib/python314-chroot.sh DIR and set {CHROOT_ENV}=DIR"
                if version == "3.14" else "")
        external_missing(f"no Python {version} on this machine{hint}")
    return found[version]
