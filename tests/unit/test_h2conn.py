"""The server connection's write deadline, against a real hyper-h2 client over a socket
pair: a peer that reads nothing loses its connection, a peer that only keeps quiet keeps
it."""

import socket
from collections.abc import Callable

import gevent
import h2.config
import h2.connection
import h2.events
import h2.settings
import hyperframe.frame
import pytest

from wireleap_relay.relay import h2conn, tunnel
from wireleap_relay.relay.h2conn import H2ServerConnection, ServerStream, StreamClosed
from wireleap_relay.relay.limits import ConnectionLimits

WIDE_OPEN = 2**31 - 1


class Client:
    """A hyper-h2 client on one end of a socket pair; it reads only when asked to."""

    def __init__(self, sock: socket.socket, window: int = WIDE_OPEN):
        self.sock = sock
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        if window > 65535:  # the connection's window too
            self.h2.increment_flow_control_window(window - 65535)
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def request(self) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, [(":method", "PUT"), (":scheme", "https"),
                                         (":authority", "relay"), (":path", "/")])
        self.flush()
        return stream_id

    def read_until_response(self, stream_id: int) -> None:
        while True:
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and \
                        event.stream_id == stream_id:
                    return
            self.flush()


@pytest.fixture
def pair(monkeypatch):
    monkeypatch.setattr(h2conn, "WRITE_TIMEOUT", 0.5)
    server_sock, client_sock = socket.socketpair()
    for sock in (server_sock, client_sock):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    yield server_sock, client_sock
    server_sock.close()
    client_sock.close()


def serve(pair, on_stream: Callable[[ServerStream], object],
          limits: ConnectionLimits = ConnectionLimits(),
          window: int = WIDE_OPEN) -> tuple[H2ServerConnection, gevent.Greenlet, Client]:
    """A server connection serving one end of the pair, and a client on the other."""
    server_sock, client_sock = pair
    conn = H2ServerConnection(server_sock, on_stream, limits)
    return conn, gevent.spawn(conn.serve), Client(client_sock, window=window)


def test_a_peer_that_reads_nothing_loses_its_connection(pair):
    outcome = []

    def flood(stream: ServerStream) -> None:
        stream.respond([(":status", "200")])
        try:
            for _ in range(1024):  # 64 MiB in the tunnel's chunks
                stream.send(b"x" * 65536)
        except StreamClosed:
            outcome.append("closed")

    _, serving, client = serve(pair, lambda s: gevent.spawn(flood, s))
    client.request()  # and never reads again
    assert serving.join(timeout=20) is None and serving.dead, "the connection was kept"
    assert wait_until(lambda: outcome == ["closed"])


def test_a_quiet_peer_keeps_its_connection(pair):

    def answer(stream: ServerStream) -> None:
        stream.respond([(":status", "200")], end_stream=True)

    _, serving, client = serve(pair, lambda s: gevent.spawn(answer, s))
    client.read_until_response(client.request())
    gevent.sleep(4 * h2conn.WRITE_TIMEOUT)  # silence, several timeouts long
    assert not serving.dead
    client.read_until_response(client.request())
    serving.kill()


def test_a_slow_client_makes_the_relay_read_no_more_than_its_window(pair):
    """The remote's bytes are read only as the client's window lets them through: a client
    with a 1000-byte window that reads nothing costs the relay at most that plus bufsize,
    not a 64 KiB read."""
    remote_near, remote_far = socket.socketpair()
    usage = [0, 0]
    pumps = []

    def pump(stream: ServerStream) -> None:
        stream.respond([(":status", "200")])
        pumps.append(gevent.spawn(tunnel._remote_to_client, stream, remote_near, 4096,
                                  False, usage))

    _, serving, client = serve(pair, lambda s: gevent.spawn(pump, s), window=1000)
    client.read_until_response(client.request())
    remote_far.setblocking(False)
    for _ in range(64):  # the remote offers far more than the window
        try:
            remote_far.send(b"r" * 4096)
        except BlockingIOError:
            break
    assert wait_until(lambda: usage[1] >= 1000)
    gevent.sleep(0.5)  # room for reads beyond the window, if the relay made them
    assert usage[1] <= 1000 + 4096
    gevent.killall(pumps)
    serving.kill()
    for sock in (remote_near, remote_far):
        sock.close()


def test_a_connection_without_streams_is_closed_once_idle(pair):
    client_sock = pair[1]
    _, serving, client = serve(pair, lambda s: None, limits=ConnectionLimits(idle_timeout=1.0))
    assert serving.join(timeout=20) is None and serving.dead, "the idle connection was kept"
    received = b""
    while chunk := client_sock.recv(65536):
        received += chunk
    events = client.h2.receive_data(received)
    assert any(isinstance(e, h2.events.ConnectionTerminated) and e.error_code == 0
               for e in events)


def test_pings_do_not_keep_a_connection_without_streams(pair):
    _, serving, client = serve(pair, lambda s: None, limits=ConnectionLimits(idle_timeout=1.0))

    def ping_often() -> None:  # more often than the socket's timeout (0.5 s here)
        while True:
            client.h2.ping(b"12345678")
            client.flush()
            gevent.sleep(0.2)

    pinger = gevent.spawn(ping_often)
    # Closed at the idle timeout (1 s); a generous bound, as the pings might end the
    # connection some other way much later.
    assert serving.join(timeout=5) is None and serving.dead, "PINGs kept it open"
    pinger.kill()


def test_a_connection_with_a_running_stream_is_not_idle(pair):
    _, serving, client = serve(pair, lambda s: None, limits=ConnectionLimits(idle_timeout=0.5))
    client.request()  # its tunnel never ends
    gevent.sleep(4 * h2conn.WRITE_TIMEOUT + 0.5)
    assert not serving.dead
    serving.kill()


def wait_until(condition, timeout: float = 10.0) -> bool:
    with gevent.Timeout(timeout, False):
        while not condition():
            gevent.sleep(0.05)
    return condition()


def test_a_flood_of_connection_window_updates_wakes_each_stream_once_per_read(
        pair, monkeypatch):
    client_sock = pair[1]
    wakes = []
    real = ServerStream._on_window
    monkeypatch.setattr(ServerStream, "_on_window",
                        lambda self: wakes.append(self.id) or real(self))
    # A window of 65535 leaves room for the flood's increments.
    conn, serving, client = serve(pair, lambda s: None, window=65535)
    for _ in range(20):
        client.request()  # tunnels that never end
    assert wait_until(lambda: len(conn.streams) == 20)
    wakes.clear()
    frame = hyperframe.frame.WindowUpdateFrame(0, window_increment=1).serialize()
    client_sock.sendall(frame * 500)  # 6.5 KB: one or two reads
    assert wait_until(lambda: len(wakes) >= 20)
    gevent.sleep(0.2)
    assert len(wakes) <= 20 * 3  # not 20 x 500
    serving.kill()


def frames_in(data: bytes) -> list[tuple[int, int]]:
    """(type, stream id) of each frame in `data`."""
    found, at = [], 0
    while at < len(data):
        length = int.from_bytes(data[at:at + 3], "big")
        found.append((data[at + 3], int.from_bytes(data[at + 5:at + 9], "big") & 0x7FFFFFFF))
        at += 9 + length
    return found


def test_the_response_headers_leave_in_the_same_write_as_the_first_data(pair, monkeypatch):
    """The tunnel's first remote bytes carry the response headers out: HEADERS and DATA
    in one write (one TLS record on a real connection), not one each."""
    writes = []
    real = H2ServerConnection._write_all
    monkeypatch.setattr(H2ServerConnection, "_write_all",
                        lambda self, data: writes.append(bytes(data)) or real(self, data))
    remote, remote_far = socket.socketpair()
    conn, serving, client = serve(pair, lambda stream: gevent.spawn(
        tunnel._remote_to_client, stream, remote, 4096, False, [0, 0]))
    stream_id = client.request()
    remote_far.sendall(b"first bytes")
    client.read_until_response(stream_id)
    ours = [frames_in(data) for data in writes if (1, stream_id) in frames_in(data)]
    assert ours == [[(1, stream_id), (0, stream_id)]]  # HEADERS then DATA, one write
    serving.kill()
    remote.close()
    remote_far.close()


def test_headers_without_data_still_leave(pair):
    conn, serving, client = serve(
        pair, lambda stream: gevent.spawn(stream.send, b"", headers=tunnel.SUCCESS_HEADERS))
    stream_id = client.request()
    with gevent.Timeout(5, AssertionError("no response headers")):
        client.read_until_response(stream_id)
    serving.kill()
