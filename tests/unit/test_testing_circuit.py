"""The test-side circuit client and its SOCKS5 front (wireleap_relay.testing), against a small
TLS+h2 server written here with hyper-h2 and the standard ssl module, independent of the code
under test. No relay is involved: the server echoes, and its /tls path runs a nested TLS+h2
server inside the stream, which is what a relay hop looks like from the client's side.
tests/conftest.py has monkey-patched gevent before this module is imported."""

import datetime
import json
import os
import socket
import ssl
import struct

import gevent
import gevent.event
import gevent.lock
import gevent.pool
import gevent.queue
import gevent.server
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import nacl.signing
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from wireleap_relay.testing.circuit import ConnectionPool, dial, ping
from wireleap_relay.testing.h2client import (
    STREAM_WINDOW,
    HandshakeError,
    RelayAddress,
    connect,
    connect_over,
)
from wireleap_relay.testing.socks5 import Socks5Server
from wireleap_relay.wire.sharetoken import ContractData, Sharetoken
from wireleap_relay.wire.status import Status

WINDOW = 1024 * 1024  # the far side announces what the Go relay does (wire.md §1.3)
OK = [(":status", "200")]
TRAILER_STATUS = Status(410, "body closed by handler", origin="target")
PONG = Status(200, "PONG", origin="far-side")
TIMEOUT = 10  # a safety net against hangs, never a timing assertion


# The far side: an HTTP/2 server connection on any socket-like object.

class FarSide:
    """Serves one connection. By request path: /echo echoes; /status echoes one chunk, then a
    wl-status trailer; /header-status answers with wl-status in the headers and END_STREAM;
    /reset sends b"partial" then RST_STREAM(INTERNAL_ERROR); /silent reads and never answers;
    /tls serves a nested TLS+h2 FarSide inside the stream. PING gets PONG, non-PUT gets 405.
    The reader never waits for the write lock or for window, like any sane relay."""

    def __init__(self, sock, server: "FarServer") -> None:
        self.sock = sock
        self.server = server
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.lock = gevent.lock.Semaphore()
        self.flush_wanted = gevent.event.Event()
        self.inboxes: dict[int, gevent.queue.Queue] = {}
        self.windows: dict[int, gevent.event.Event] = {}

    def serve(self) -> None:
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
                                 h2.settings.SettingCodes.MAX_FRAME_SIZE: WINDOW})
        self.h2.increment_flow_control_window(WINDOW)
        greenlets = gevent.pool.Group()
        greenlets.spawn(self.flush_loop)
        try:
            self.flush()
            while data := self.sock.recv(65536):
                for event in self.h2.receive_data(data):
                    self.dispatch(event, greenlets)
                self.flush_wanted.set()
        except (OSError, h2.exceptions.ProtocolError):
            pass
        finally:
            greenlets.kill()
            self.sock.close()

    def dispatch(self, event, greenlets: gevent.pool.Group) -> None:
        sid = getattr(event, "stream_id", 0)
        if isinstance(event, h2.events.RequestReceived):
            self.inboxes[sid], self.windows[sid] = gevent.queue.Queue(), gevent.event.Event()
            headers = dict(event.headers)
            self.server.requests.append(headers)
            greenlets.spawn(self.handle, sid, headers, self.inboxes[sid])
        elif isinstance(event, h2.events.DataReceived) and sid in self.inboxes:
            self.inboxes[sid].put((event.data, event.flow_controlled_length))
        elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            self.inboxes[sid].put(None)
            self.windows[sid].set()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            for stream_id, window in self.windows.items():
                if not sid or sid == stream_id:
                    window.set()

    def handle(self, sid: int, headers: dict, inbox: gevent.queue.Queue) -> None:
        try:
            if headers[":method"] != "PUT":
                self.respond(sid, [(":status", "405")], b'{"code":405}\n\n')
            elif json.loads(headers.get("wl-payload", "{}")).get("command") == "PING":
                self.respond(sid, OK, (PONG.to_json() + "\n").encode())
            else:
                getattr(self, "path_" + headers[":path"].strip("/").replace("-", "_"))(sid, inbox)
        except (OSError, h2.exceptions.ProtocolError):
            pass  # the client went away

    def path_echo(self, sid: int, inbox: gevent.queue.Queue) -> None:
        self.send_headers(sid, OK)
        while (item := inbox.get()) is not None:
            self.send_data(sid, item[0])
            self.ack(sid, item[1])  # only once echoed: back-pressure
        self.send_headers(sid, None, end=True)

    def path_status(self, sid: int, inbox: gevent.queue.Queue) -> None:
        self.send_headers(sid, OK + [("trailer", "wl-status")])
        data, length = inbox.get()
        self.send_data(sid, data)
        self.ack(sid, length)
        self.send_headers(sid, [("wl-status", TRAILER_STATUS.to_json())], end=True)

    def path_header_status(self, sid: int, inbox: gevent.queue.Queue) -> None:
        self.send_headers(sid, OK + [("wl-status", TRAILER_STATUS.to_json())], end=True)

    def path_reset(self, sid: int, inbox: gevent.queue.Queue) -> None:
        self.send_headers(sid, OK)
        self.send_data(sid, b"partial")
        with self.lock:
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self.flush_locked()

    def path_silent(self, sid: int, inbox: gevent.queue.Queue) -> None:
        while inbox.get() is not None:
            pass

    def path_tls(self, sid: int, inbox: gevent.queue.Queue) -> None:
        """A relay hop seen from the client: the stream carries a whole TLS+h2 connection."""
        self.send_headers(sid, OK)
        outer, inner = socket.socketpair()
        helpers = [gevent.spawn(self.server.serve_tls, inner),
                   gevent.spawn(self.pipe_to_stream, sid, outer)]
        try:
            while (item := inbox.get()) is not None:
                outer.sendall(item[0])
                self.ack(sid, item[1])
        finally:
            outer.close()
            gevent.killall(helpers)

    def pipe_to_stream(self, sid: int, sock: socket.socket) -> None:
        try:
            while data := sock.recv(65536):
                self.send_data(sid, data)
            self.send_headers(sid, None, end=True)
        except (OSError, h2.exceptions.ProtocolError):
            pass

    def respond(self, sid: int, headers: list, body: bytes) -> None:
        self.send_headers(sid, headers)
        self.send_data(sid, body)
        self.send_headers(sid, None, end=True)

    def send_headers(self, sid: int, headers: list | None, end: bool = False) -> None:
        with self.lock:
            if headers is None:
                self.h2.end_stream(sid)
            else:
                self.h2.send_headers(sid, headers, end_stream=end)
            self.flush_locked()

    def send_data(self, sid: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self.windows[sid].clear()
            with self.lock:
                room = min(self.h2.local_flow_control_window(sid),
                           self.h2.max_outbound_frame_size, len(view))
                if room > 0:
                    self.h2.send_data(sid, bytes(view[:room]))
                    self.flush_locked()
                    view = view[room:]
                    continue
            self.windows[sid].wait()

    def ack(self, sid: int, length: int) -> None:
        self.h2.acknowledge_received_data(length, sid)
        self.flush_wanted.set()

    def flush(self) -> None:
        with self.lock:
            self.flush_locked()

    def flush_locked(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def flush_loop(self) -> None:
        while True:
            self.flush_wanted.wait()
            self.flush_wanted.clear()
            self.flush()


class FarServer:
    """TLS 1.3 + h2 on 127.0.0.1; records every request's headers, counts TCP connections."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.requests: list[dict] = []
        self.connections = 0
        self._server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle,
                                                  spawn=gevent.pool.Pool())
        self._server.start()
        self.port = self._server.address[1]

    def url(self, path: str) -> str:
        return f"wireleap://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self._server.stop(timeout=0)

    def _handle(self, sock: socket.socket, _peer) -> None:
        self.connections += 1
        self.serve_tls(sock)

    def serve_tls(self, sock: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(sock, server_side=True)
        except OSError:
            sock.close()
            return
        FarSide(tls, self).serve()


def server_context(cert_dir, alpn: bool = True) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if alpn:
        context.set_alpn_protocols(["h2"])
    context.load_cert_chain(cert_dir / "cert.pem", cert_dir / "key.pem")
    return context


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory):
    """A self-signed ed25519 certificate, like the one `wireleap-relay init` makes."""
    path = tmp_path_factory.mktemp("tls")
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Wireleap")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("wireleap.com")]), False)
            .sign(key, None))
    (path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path


@pytest.fixture
def server(cert_dir):
    far = FarServer(server_context(cert_dir))
    yield far
    far.stop()


@pytest.fixture
def pool():
    connections = ConnectionPool()
    yield connections
    connections.close()


@pytest.fixture(autouse=True)
def no_hang():
    with gevent.Timeout(TIMEOUT):
        yield


def recv_exactly(stream, n: int) -> bytes:
    parts, size = [], 0
    while size < n:
        data = stream.recv(n - size)
        assert data, f"stream ended after {size} of {n} bytes"
        parts.append(data)
        size += len(data)
    return b"".join(parts)


def recv_all(stream) -> bytes:
    parts = []
    while data := stream.recv(65536):
        parts.append(data)
    return b"".join(parts)


def echo_through(stream, data: bytes) -> bytes:
    """Send and receive concurrently, as a tunnel user does; returns what came back."""
    sender = gevent.spawn(stream.sendall, data)
    received = recv_exactly(stream, len(data))
    sender.get()
    return received


# The HTTP/2 client.

def test_relay_address_gives_the_request_line():
    address = RelayAddress.parse("wireleap://relay.example:13490/wl?x=1")
    assert (address.host, address.port, address.authority, address.path) == (
        "relay.example", 13490, "relay.example:13490", "/wl?x=1")
    assert RelayAddress.parse("wireleap://relay.example").port == 443
    assert RelayAddress.parse("wireleap://[::1]:1").path == "/"
    with pytest.raises(ValueError):
        RelayAddress.parse("target://example.com:80")


def test_one_stream_echo_and_the_request_it_sends(server):
    conn = connect(server.url("/echo"))
    stream = conn.open_stream('{"command":"CONNECT"}')
    assert echo_through(stream, b"hello") == b"hello"
    stream.close()
    conn.close()
    assert server.requests == [{
        ":authority": f"127.0.0.1:{server.port}", ":method": "PUT", ":path": "/echo",
        ":scheme": "https", "wl-payload": '{"command":"CONNECT"}',
        "accept-encoding": "gzip", "user-agent": "Go-http-client/2.0"}]


def test_many_concurrent_streams_share_one_connection(server):
    conn = connect(server.url("/echo"))
    blobs = [os.urandom(64 * 1024 + i) for i in range(40)]

    def one(blob: bytes) -> bool:
        stream = conn.open_stream("{}")
        try:
            return echo_through(stream, blob) == blob
        finally:
            stream.close()

    assert all(gevent.pool.Group().map(one, blobs))
    assert server.connections == 1
    conn.close()


def test_a_stream_nobody_reads_stalls_only_itself(server):
    conn = connect(server.url("/echo"))
    stalled = conn.open_stream("{}")
    blob = os.urandom(16 * 1024 * 1024)  # more than every window on the way can hold
    sender = gevent.spawn(stalled.sendall, blob)
    gevent.sleep(0.2)  # let it fill the windows; nothing below depends on how far it got
    other = conn.open_stream("{}")
    assert echo_through(other, b"still flowing") == b"still flowing"
    assert not sender.ready()
    assert stalled.buffered <= STREAM_WINDOW
    assert recv_exactly(stalled, len(blob)) == blob
    sender.get()
    conn.close()


def test_16_mib_echo_is_byte_identical(server):
    conn = connect(server.url("/echo"))
    stream = conn.open_stream("{}")
    blob = os.urandom(16 * 1024 * 1024)
    assert echo_through(stream, blob) == blob
    stream.shutdown_write()
    assert stream.recv(1) == b""
    conn.close()


def test_tls_and_h2_inside_a_stream(server):
    conn = connect(server.url("/tls"))
    carrier = conn.open_stream("{}")
    inner = connect_over(carrier, server.url("/echo"))
    stream = inner.open_stream("{}")
    blob = os.urandom(1024 * 1024)
    assert echo_through(stream, blob) == blob
    assert [r[":path"] for r in server.requests] == ["/tls", "/echo"]
    assert server.connections == 1  # the inner connection travelled inside the outer stream
    inner.close()
    conn.close()


def test_a_carrier_that_ends_before_tls_is_reported(server):
    conn = connect(server.url("/reset"))
    with pytest.raises(ConnectionError, match="reset code 2"):
        connect_over(conn.open_stream("{}"), server.url("/echo"))
    conn.close()


def test_trailer_status_and_header_status(server):
    conn = connect(server.url("/status"))
    stream = conn.open_stream("{}")
    stream.sendall(b"x")
    assert recv_all(stream) == b"x"
    assert stream.status == TRAILER_STATUS
    assert ("trailer", "wl-status") in stream.headers
    assert stream.reset_code is None
    stream = conn.open_stream("{}", path="/header-status")
    assert recv_all(stream) == b""
    assert stream.status == TRAILER_STATUS
    conn.close()


def test_reset_after_data_delivers_the_data_then_the_code(server):
    conn = connect(server.url("/reset"))
    stream = conn.open_stream("{}")
    assert recv_all(stream) == b"partial"
    assert stream.reset_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert stream.status is None
    with pytest.raises(BrokenPipeError):
        stream.sendall(b"too late")
    conn.close()


def test_ping_reads_the_pong(server, pool):
    assert ping(server.url("/"), pool=pool) == PONG
    assert json.loads(server.requests[0]["wl-payload"]) == {"command": "PING"}


def test_other_methods_and_malformed_payloads_can_be_sent(server):
    conn = connect(server.url("/echo"))
    stream = conn.open_stream("{not json", method="GET", end_stream=True)
    assert recv_all(stream) == b'{"code":405}\n\n'
    assert dict(stream.headers)[":status"] == "405"
    assert server.requests[0][":method"] == "GET"
    assert server.requests[0]["wl-payload"] == "{not json"
    conn.close()


def test_recv_times_out_on_a_silent_stream(server):
    conn = connect(server.url("/silent"))
    stream = conn.open_stream("{}")
    stream.settimeout(0.05)
    with pytest.raises(TimeoutError):
        stream.recv(1)
    conn.close()


def test_lost_connection_ends_every_stream(server):
    conn = connect(server.url("/silent"))
    streams = [conn.open_stream("{}") for _ in range(3)]
    server.stop()
    assert [s.recv(1) for s in streams] == [b""] * 3
    assert all(s.error is not None for s in streams)
    with pytest.raises(ConnectionError):
        conn.open_stream("{}")


def test_handshake_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts TCP in the backlog, never speaks TLS
    with pytest.raises(TimeoutError):
        connect(f"wireleap://127.0.0.1:{listener.getsockname()[1]}", timeout=0.1)
    listener.close()


def test_a_server_without_h2_is_refused(cert_dir):
    far = FarServer(server_context(cert_dir, alpn=False))
    with pytest.raises(HandshakeError):
        connect(far.url("/"))
    far.stop()


# Circuits.

@pytest.fixture
def keys():
    servicekey = nacl.signing.SigningKey.generate()
    contract = ContractData.sign(nacl.signing.SigningKey.generate(), 2_000_000_000, 2_000_003_600)
    relays = [bytes(nacl.signing.SigningKey.generate().verify_key) for _ in range(3)]
    return servicekey, contract, relays


def test_dial_nests_one_connection_per_hop_with_a_token_each(server, pool, keys):
    servicekey, contract, relays = keys
    hops = list(zip([server.url("/tls"), server.url("/tls"), server.url("/echo")], relays,
                    strict=True))
    circuit = dial(hops, "example.com:443", "udp", servicekey, contract, pool=pool)
    blob = os.urandom(512 * 1024)
    assert echo_through(circuit, blob) == blob
    payloads = [json.loads(request["wl-payload"]) for request in server.requests]
    assert [(p["command"], p["protocol"], p["remote"], p["version"]) for p in payloads] == [
        ("CONNECT", "tcp", server.url("/tls"), "0.2.0"),
        ("CONNECT", "tcp", server.url("/echo"), "0.2.0"),
        ("CONNECT", "udp", "target://example.com:443", "0.2.0")]
    tokens = [Sharetoken.from_dict(p["token"]) for p in payloads]
    assert [t.relay_pubkey for t in tokens] == relays
    assert {t.public_key for t in tokens} == {bytes(servicekey.verify_key)}
    assert len({t.nonce for t in tokens}) == 3
    assert tokens[0].contract == contract
    circuit.close()


def test_no_hop_sends_sni(server, pool, keys):
    names = []
    server.context.sni_callback = lambda _tls, name, _context: names.append(name)
    servicekey, contract, relays = keys
    by_name = [server.url(path).replace("127.0.0.1", "localhost") for path in ("/tls", "/echo")]
    dial(list(zip(by_name, relays[:2], strict=True)), "example.com:80", "tcp", servicekey,
         contract, pool=pool).close()
    assert names == [None, None]


def test_circuits_share_the_first_hop_connection(server, pool, keys):
    servicekey, contract, relays = keys
    hops = [(server.url("/tls"), relays[0]), (server.url("/echo"), relays[1])]
    circuits = [dial(hops, "[::1]:80", "tcp", servicekey, contract, pool=pool) for _ in range(3)]
    for circuit in circuits:
        assert echo_through(circuit, b"ping") == b"ping"
        circuit.close()
    assert server.connections == 1
    assert json.loads(server.requests[-1]["wl-payload"])["remote"] == "target://[::1]:80"


# SOCKS5.

@pytest.fixture
def socks(server):
    """A SOCKS5 front whose `dial` opens an echo stream and records what it was asked."""
    conn = connect(server.url("/echo"))
    dials = []

    def open_echo(host: str, port: int, protocol: str):
        dials.append((host, port, protocol))
        return conn.open_stream("{}")

    front = Socks5Server(dial=open_echo)
    front.start()
    yield front, dials
    front.stop()
    conn.close()


def socks_request(front: Socks5Server, command: int, address: bytes) -> tuple[socket.socket,
                                                                               bytes]:
    sock = socket.create_connection(front.address)
    sock.sendall(b"\x05\x01\x00")
    assert sock.recv(2) == b"\x05\x00"
    sock.sendall(bytes([5, command, 0]) + address)
    return sock, recv_exactly(sock, 10)


@pytest.mark.parametrize(("address", "target"), [
    (b"\x01\x7f\x00\x00\x01\x00\x50", ("127.0.0.1", 80)),
    (b"\x03\x0bexample.com\x01\xbb", ("example.com", 443)),
    (b"\x04" + socket.inet_pton(socket.AF_INET6, "::1") + b"\x1f\x90", ("::1", 8080)),
])
def test_socks_connect_splices_a_stream(socks, address, target):
    front, dials = socks
    sock, reply = socks_request(front, 1, address)
    assert reply[:2] == b"\x05\x00"
    sock.sendall(b"through socks")
    assert recv_exactly(sock, 13) == b"through socks"
    assert dials == [(*target, "tcp")]
    sock.close()


def test_socks_refuses_unknown_commands(socks):
    front, dials = socks
    _, reply = socks_request(front, 2, b"\x01\x7f\x00\x00\x01\x00\x50")  # BIND
    assert reply[:2] == b"\x05\x07"
    assert dials == []


def test_socks_udp_associate_roundtrip(socks):
    front, dials = socks
    control, reply = socks_request(front, 3, b"\x01\x00\x00\x00\x00\x00\x00")
    assert reply[:4] == b"\x05\x00\x00\x01"
    relay = (socket.inet_ntoa(reply[4:8]), struct.unpack("!H", reply[8:10])[0])
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    header = b"\x00\x00\x00\x01" + socket.inet_aton("192.0.2.7") + struct.pack("!H", 53)
    udp.sendto(header + b"one datagram", relay)
    assert udp.recvfrom(65535) == (header + b"one datagram", relay)
    assert dials == [("192.0.2.7", 53, "udp")]
    udp.close()
    control.close()

