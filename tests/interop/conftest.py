"""Interop with the real Go peers of ../shared/peers (the `wireleap` client 0.6.3 with its
SOCKS5 forwarder, the Go `wireleap-relay` 0.6.1), each run from a copy in a fresh folder.

One fake contract+directory for the session, with three relays of this project and three
Go relays (one per role) enrolled, and one Go client that imported an accesskey after they
all enrolled; a test picks its circuit with the client's whitelist. Targets: an HTTP server
of random bytes, closed ports, a UDP echo server, all on 127.0.0.1.
"""

import hashlib
import importlib.util
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack

import gevent
import pytest
from gevent.pywsgi import WSGIServer
from gevent.server import DatagramServer

from wireleap_relay.testing.fake_contract import FakeContract
from wireleap_relay.testing.gopeers import (
    CLIENT_BINARY,
    RELAY_BINARY,
    GoClient,
    GoRelayProcess,
    make_go_relay_home,
)
from wireleap_relay.testing.relayproc import RelayProcess, free_port, make_home
from wireleap_relay.testing.servicekey import write_accesskey_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = os.path.normpath(os.path.join(ROOT, "..", "shared", "peers"))
ROLES = ("fronting", "entropic", "backing")


def _load_integration_helpers():
    """tests/integration/conftest.py as a plain module (not a second plugin), for its
    helpers; pytest may run this folder alone, without loading that conftest."""
    path = os.path.join(ROOT, "tests", "integration", "conftest.py")
    spec = importlib.util.spec_from_file_location("wl_integration_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_helpers = _load_integration_helpers()
external_missing = _helpers.external_missing
require_binary = _helpers.require_binary
run_cli = _helpers.run_cli
wait_for = _helpers.wait_for
FAST = _helpers.FAST

BLOB_SIZE = 8 << 20  # 8 MiB: about 0.2 s through any circuit here, far from the 10 s cut
SLOW_SECONDS = 6.0   # /slow takes this long: room for a restart, short of the 10 s cut


@pytest.fixture(scope="session")
def peers() -> str:
    """The folder of the Go binaries; skips (fails under WIRELEAP_REQUIRE_EXTERNAL) without."""
    for name in (CLIENT_BINARY, RELAY_BINARY):
        if not os.access(os.path.join(PEERS, name), os.X_OK):
            external_missing(f"the Go peers are not in {PEERS} ({name} is missing)")
    return PEERS


@pytest.fixture(scope="session")
def curl() -> str:
    return require_binary("curl")


class Stopper:
    """Whatever a test (or the session) starts is stopped at its end, even on failure,
    in reverse order."""

    def __init__(self) -> None:
        self._stack = ExitStack()

    def add(self, proc):
        self._stack.callback(proc.stop)
        return proc

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def stopper() -> Iterator[Stopper]:
    s = Stopper()
    yield s
    s.close()


class Network:
    """The session's fake contract with our relays and the Go relays, one per role."""

    def __init__(self, root: str, peers: str, contract: FakeContract,
                 stopper: Stopper) -> None:
        self.root = root
        self.peers = peers
        self.contract = contract
        self.stopper = stopper  # the session's: relays started here live until its end
        self.ours: dict[str, RelayProcess] = {}
        self.go: dict[str, GoRelayProcess] = {}

    def start_ours(self, name: str, role: str, **settings) -> RelayProcess:
        proc = RelayProcess(make_home(self.root, name, self.contract.url, role, **settings))
        return self.stopper.add(proc).start()

    def start_go(self, name: str, role: str, **settings) -> GoRelayProcess:
        relay = make_go_relay_home(self.peers, self.root, name, self.contract.url, role,
                                   **settings)
        return self.stopper.add(GoRelayProcess(relay, self.contract.dir_url)).start()

    def start_roles(self) -> None:
        """One relay of each kind per role, started side by side; back once all enrolled."""
        ours = [gevent.spawn(self.start_ours, f"ours-{role}", role) for role in ROLES]
        go = [gevent.spawn(self.start_go, f"go-{role}", role) for role in ROLES]
        gevent.joinall(ours + go)
        self.ours = {role: job.get() for role, job in zip(ROLES, ours, strict=True)}
        self.go = {role: job.get() for role, job in zip(ROLES, go, strict=True)}

    def relay(self, kind: str, role: str):
        """"ours" or "go" relay of `role`."""
        return (self.ours if kind == "ours" else self.go)[role]


def accesskey(folder: str, contract: FakeContract, pofs: int = 40) -> str:
    path = os.path.join(folder, "accesskey.json")
    write_accesskey_file(path, contract.url, contract.contract_pubkey, pofs)
    return path


def start_client(folder: str, peers: str, accesskey_path: str, stopper: Stopper,
                 hops: int = 1, whitelist: list[str] | None = None) -> GoClient:
    """A Go client that imported `accesskey_path` with its SOCKS forwarder up. The relays
    it may use must be enrolled already: it reads the relay list at import and reload."""
    client = stopper.add(GoClient(peers, folder, hops=hops, whitelist=whitelist or []))
    client.start()
    client.import_accesskeys(accesskey_path)
    client.socks_start()
    return client


@pytest.fixture(scope="session")
def network(tmp_path_factory, peers) -> Iterator[Network]:
    root = str(tmp_path_factory.mktemp("interop"))
    stopper = Stopper()
    try:
        # Servicekeys outlive the session: the tokens relays take here stay pending.
        contract = stopper.add(FakeContract(os.path.join(root, "contract"),
                                            servicekey_duration=3600,
                                            submission_window=3600).start())
        net = Network(root, peers, contract, stopper)
        net.start_roles()
        yield net
    finally:
        stopper.close()


@pytest.fixture(scope="session")
def session_accesskey(network) -> str:
    return accesskey(network.root, network.contract)


@pytest.fixture(scope="session")
def go_client(network, session_accesskey) -> Iterator[GoClient]:
    """The session's Go client: every relay of `network` is enrolled before its import."""
    stopper = Stopper()
    try:
        yield start_client(os.path.join(network.root, "client"), network.peers,
                           session_accesskey, stopper)
    finally:
        stopper.close()


# Targets.

class Web:
    """Random bytes over HTTP/1.1: GET /blob sends them at once, GET /slow spreads them
    over SLOW_SECONDS (so a transfer is surely running at the relay meanwhile); POST
    /sha256 answers the hex SHA-256 of the request body."""

    def __init__(self) -> None:
        self.blob = os.urandom(BLOB_SIZE)
        self.sha256 = hashlib.sha256(self.blob).hexdigest()
        self.server = WSGIServer(("127.0.0.1", 0), self._app, log=None, error_log=None)
        self.server.start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/sha256" and environ["REQUEST_METHOD"] == "POST":
            digest, left = hashlib.sha256(), int(environ.get("CONTENT_LENGTH") or 0)
            while left > 0 and (data := environ["wsgi.input"].read(min(left, 1 << 20))):
                digest.update(data)
                left -= len(data)
            body = digest.hexdigest().encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        if path not in ("/blob", "/slow"):
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(self.blob)))])
        return self._chunks(path == "/slow")

    def _chunks(self, slow: bool) -> Iterator[bytes]:
        chunk = 128 << 10
        pause = SLOW_SECONDS / (len(self.blob) / chunk) if slow else 0
        for start in range(0, len(self.blob), chunk):
            yield self.blob[start:start + chunk]
            if pause:
                gevent.sleep(pause)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="session")
def web() -> Iterator[Web]:
    server = Web()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def udp_echo_server() -> Iterator[tuple[str, int]]:
    server = DatagramServer(("127.0.0.1", 0), lambda data, addr: server.sendto(data, addr))
    server.start()
    yield "127.0.0.1", server.address[1]
    server.stop()


def closed_port() -> int:
    """A loopback port with nothing listening (free a moment ago)."""
    return free_port()


def sha256_file(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def curl_args(curl: str, client: GoClient, url: str, out: str, *extra: str) -> list[str]:
    # --max-time: a transfer through this Go client must end well before its 10 s cut.
    return [curl, "-sS", "--max-time", "9", "-o", out, "-w", "%{http_code}",
            "--socks5-hostname", client.socks_address, *extra, url]


def download(curl: str, client: GoClient, url: str, out: str,
             *extra: str) -> subprocess.CompletedProcess:
    """`curl --socks5-hostname` through the Go client's forwarder; the body goes to `out`."""
    if os.path.exists(out):
        os.unlink(out)
    return subprocess.run(curl_args(curl, client, url, out, *extra), capture_output=True,
                          text=True, timeout=30)


class LogMark:
    """What a log file got after this point."""

    def __init__(self, read) -> None:
        self._read = read
        self._offset = len(read())

    def new(self) -> str:
        return self._read()[self._offset:]


_LINK = re.compile(r"Connecting to circuit link: (\w+) (wireleap://\S+) ")


def circuit_links(client_log: str) -> list[tuple[str, str]]:
    """(role, address) of every circuit link the Go client dialed, in order."""
    return _LINK.findall(client_log)


def token_files(relay) -> list[str]:
    """The pending sharetoken files of a relay (ours or Go): sharetokens/<contract>/*.json."""
    found = []
    root = relay.relay.home.sharetokens
    for contract in os.listdir(root) if os.path.isdir(root) else []:
        folder = os.path.join(root, contract)
        if contract in ("expired", "malformed") or not os.path.isdir(folder):
            continue
        found += [os.path.join(folder, name) for name in os.listdir(folder)
                  if name.endswith(".json")]
    return found
