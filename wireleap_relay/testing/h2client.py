"""HTTP/2 client connections opened the way the Go Wireleap client opens them (wire.md §1.2,
§1.3), with each request stream exposed as a socket-like byte pipe (§2).

Runs under gevent; the process entry point patches, this module never does. Concurrency rules
(style.md §3, §4): one reader greenlet per connection drives h2 and files events per stream; every
write holds the connection's write lock around "h2 call + data_to_send + sendall", so bytes reach
the wire in the order h2 serialised them. h2 is pure Python and never yields, so an h2 call made
outside the lock (the reader's receive_data, an acknowledgement) cannot interleave with a locked
one; the reader then only asks the flusher greenlet to send, and never waits for the lock or for
window. That matters when this connection itself runs inside another connection's stream.
"""

import functools
import json
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import gevent
import gevent.event
import gevent.lock
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from wireleap_relay.wire.status import Status

CONNECT_TIMEOUT = 5.0  # the Go client's broker.circuit.timeout default (wire.md §1.2)
# The Go client's announcements (wire.md §1.3).
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW_INCREMENT = 1 << 30
MAX_HEADER_LIST_SIZE = 10 * 1024 * 1024
# What Go's HTTP/2 transport adds to every request (wire.md §2.1).
GO_HEADERS = (("accept-encoding", "gzip"), ("user-agent", "Go-http-client/2.0"))
READ_SIZE = 256 * 1024
# Consumed bytes are handed back to h2 in batches: one h2 call per 64 KiB read instead of one
# per recv. What is held back stays far below the 4 MiB stream window, so no stream stalls.
ACK_BATCH = 64 * 1024


class HandshakeError(ConnectionError):
    """The peer is not an HTTP/2-over-TLS server (ALPN did not select h2)."""


@dataclass(frozen=True)
class RelayAddress:
    """A relay address `wireleap://host[:port][/path]` and the request line it gives (§1.5)."""

    text: str
    host: str
    port: int
    authority: str
    path: str

    @classmethod
    def parse(cls, text: str) -> "RelayAddress":
        parts = urlsplit(text)
        if parts.scheme not in ("wireleap", "https") or not parts.hostname:
            raise ValueError(f"not a relay address: {text!r}")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = parts.netloc.rpartition("@")[2]
        return cls(text, parts.hostname, parts.port or 443, authority, path)


@functools.cache
def client_context() -> ssl.SSLContext:
    """TLS 1.3 minimum, ALPN h2 only, no verification, like the Go client (wire.md §1.2)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols(["h2"])
    return context


def parse_status(text: str) -> Status | None:
    """A `wl-status` value or PONG body as a Status; None when it is not one."""
    try:
        obj = json.loads(text)
        return Status(int(obj["code"]), str(obj["description"]), str(obj.get("origin", "")),
                      str(obj.get("cause", "")))
    except (ValueError, TypeError, KeyError):
        return None


class H2Stream:
    """One request stream as a byte pipe.

    Reads see the response DATA; the stream ends on END_STREAM, RST_STREAM (any code) or the loss
    of the connection (wire.md §2.7), and then `recv` returns b"" once the buffer is drained.
    Data that arrived before a reset is still delivered (§5.4).
    """

    def __init__(self, conn: "H2ClientConnection", stream_id: int) -> None:
        self.stream_id = stream_id
        self.headers: list[tuple[str, str]] | None = None
        self.trailers: list[tuple[str, str]] | None = None
        self.status: Status | None = None
        self.reset_code: int | None = None
        self.error: BaseException | None = None  # the connection failure that ended it
        self.timeout: float | None = None  # for recv and sendall, like socket.settimeout
        self._conn = conn
        self._chunks: deque[bytes | memoryview] = deque()
        self._unacked = 0
        self._ended = False  # nothing more will arrive
        self._closed = False  # the application let go of it
        self._readable = gevent.event.Event()
        self._writable = gevent.event.Event()

    @property
    def ended(self) -> bool:
        """Nothing more will arrive (what did arrive may still be unread)."""
        return self._ended

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet: at most the 4 MiB window we announced."""
        return sum(len(chunk) for chunk in self._chunks)

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def recv(self, n: int) -> bytes:
        """Up to n bytes of one DATA frame. Frames are never merged, so a UDP stream keeps its
        datagram boundaries (wire.md §5.5). b"" at the end."""
        self._wait(self._readable, lambda: bool(self._chunks) or self._ended)
        if not self._chunks:
            return b""
        head = self._chunks[0]
        if len(head) <= n:
            self._chunks.popleft()
            data = bytes(head)
        else:
            view = memoryview(head)
            self._chunks[0] = view[n:]
            data = bytes(view[:n])
        self._consumed(len(data))
        return data

    def sendall(self, data: bytes) -> None:
        """Send everything, waiting for flow-control window as needed."""
        view = memoryview(data)
        while view:
            self._writable.clear()  # before looking at the window, so no update is missed
            sent = self._conn._send_some(self, view)
            if sent:
                view = view[sent:]
            else:
                self._wait(self._writable, self._writable.is_set)

    def shutdown_write(self) -> None:
        """END_STREAM: a polite end of our side (the Go client never does this, §2.1)."""
        self._conn._end_stream(self)

    def close(self) -> None:
        """RST_STREAM(CANCEL), like the Go client closing a tunnel (wire.md §2.1)."""
        if self._closed:
            return
        self._closed = True
        self._ended = True
        unread = self.buffered + self._unacked
        self._chunks.clear()
        self._unacked = 0
        self._conn._cancel(self, unread)
        self._wake()

    # Called by the connection's reader only.

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self.headers = event.headers
            self._take_status(event.headers)
        elif isinstance(event, h2.events.TrailersReceived):
            self.trailers = event.headers
            self._take_status(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            self._ended = True
            self._readable.set()
        elif isinstance(event, h2.events.StreamReset):
            self.reset_code = int(event.error_code)
            self._end()

    def _on_data(self, data: bytes, flow_controlled_length: int) -> None:
        padding = flow_controlled_length - len(data)
        if padding:
            self._conn._acknowledge(self.stream_id, padding)
        if data:
            self._chunks.append(data)
            self._readable.set()

    def _end(self, error: BaseException | None = None) -> None:
        self.error = self.error or error
        self._ended = True
        self._wake()

    def _take_status(self, headers: list[tuple[str, str]]) -> None:
        for name, value in headers:
            if name == "wl-status":
                self.status = parse_status(value)

    def _wake(self) -> None:
        self._readable.set()
        self._writable.set()

    def _consumed(self, n: int) -> None:
        self._unacked += n
        if self._unacked >= ACK_BATCH:
            self._conn._acknowledge(self.stream_id, self._unacked)
            self._unacked = 0

    def _wait(self, event: gevent.event.Event, ready: Callable[[], bool]) -> None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while not ready():
            event.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if (remaining is not None and remaining <= 0) or not event.wait(remaining):
                raise TimeoutError(f"stream {self.stream_id} timed out")


class H2ClientConnection:
    """An HTTP/2 client connection over a TLS transport (a TLS socket, or TlsOverStream)."""

    def __init__(self, transport: "socket.socket | TlsOverStream", address: RelayAddress) -> None:
        self.address = address
        self.error: BaseException | None = None
        self._transport = transport
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self._streams: dict[int, H2Stream] = {}
        self._write_lock = gevent.lock.Semaphore()
        self._flush_wanted = gevent.event.Event()
        self._goaway = False
        self._start()

    def _start(self) -> None:
        self._h2.initiate_connection()
        # hyper-h2 only serialises acknowledged settings in initiate_connection(): announce ours
        # afterwards (design.md, Conventions).
        self._h2.update_settings({
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
        })
        self._h2.increment_flow_control_window(CONNECTION_WINDOW_INCREMENT)
        with self._write_lock:
            self._flush_locked()
        gevent.spawn(self._read_loop)
        gevent.spawn(self._flush_loop)

    @property
    def usable(self) -> bool:
        """Alive and with room for one more stream (a pool may put the next stream here)."""
        return (self.error is None and not self._goaway and self._h2.open_outbound_streams
                < self._h2.remote_settings.max_concurrent_streams)

    def open_stream(self, payload: str | None = None, method: str = "PUT",
                    headers: Sequence[tuple[str, str]] = GO_HEADERS, authority: str | None = None,
                    path: str | None = None, end_stream: bool = False) -> H2Stream:
        """Send a request's HEADERS and return its stream at once: the relay answers only when
        the remote sends bytes, so nobody may wait for the response (wire.md §2.4).

        `payload` goes into `wl-payload` as is (None leaves the header out), so tests can send
        malformed payloads and other methods. Pseudo-headers come in Go's order.
        """
        request = [(":authority", authority or self.address.authority), (":method", method),
                   (":path", path or self.address.path), (":scheme", "https")]
        if payload is not None:
            request.append(("wl-payload", payload))
        request.extend(headers)
        with self._write_lock:
            self._raise_if_failed()
            if self._goaway:
                raise ConnectionError("the relay sent GOAWAY: no new streams on this connection")
            stream = H2Stream(self, self._h2.get_next_available_stream_id())
            self._streams[stream.stream_id] = stream
            self._h2.send_headers(stream.stream_id, request, end_stream=end_stream)
            self._flush_locked()
        return stream

    def close(self) -> None:
        """GOAWAY (when the writer is free soon) and close the transport; streams end."""
        if self.error is not None:
            return
        if self._write_lock.acquire(timeout=1.0):
            try:
                self._h2.close_connection()
                self._flush_locked()
            except OSError:
                pass
            finally:
                self._write_lock.release()
        self._fail(ConnectionAbortedError("connection closed locally"))

    # The reader and the flusher.

    def _read_loop(self) -> None:
        try:
            while True:
                data = self._transport.recv(READ_SIZE)
                if not data:
                    raise ConnectionResetError("connection closed by the relay")
                for event in self._h2.receive_data(data):
                    self._dispatch(event)
                self._flush_wanted.set()
        except (OSError, h2.exceptions.ProtocolError) as exc:
            self._fail(exc)
        except ValueError as exc:  # gevent's SSL socket, closed by close() meanwhile
            self._fail(ConnectionAbortedError(str(exc)))

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged) or (
                isinstance(event, h2.events.WindowUpdated) and not event.stream_id):
            for stream in self._streams.values():  # new window for every stream
                stream._writable.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway(event.last_stream_id)
        elif isinstance(event, h2.events.WindowUpdated):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._writable.set()
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif (stream := self._streams.get(getattr(event, "stream_id", 0))) is not None:
            stream._on_event(event)
            if isinstance(event, h2.events.StreamReset):
                del self._streams[event.stream_id]

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:  # closed by us meanwhile: hand the window straight back
            self._acknowledge(event.stream_id, event.flow_controlled_length)
        else:
            stream._on_data(event.data, event.flow_controlled_length)

    def _on_goaway(self, last_stream_id: int | None) -> None:
        self._goaway = True
        for stream_id in [s for s in self._streams if s > (last_stream_id or 0)]:
            self._streams.pop(stream_id)._end(ConnectionResetError("GOAWAY from the relay"))

    def _flush_loop(self) -> None:
        while self.error is None:
            self._flush_wanted.wait()
            self._flush_wanted.clear()
            with self._write_lock:
                if self.error is None:
                    try:
                        self._flush_locked()
                    except OSError:
                        return

    def _fail(self, error: BaseException) -> None:
        if self.error is not None:
            return
        self.error = error
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream._end(error)
        self._flush_wanted.set()
        self._transport.close()

    # Writes, called from stream greenlets.

    def _flush_locked(self) -> None:
        data = self._h2.data_to_send()
        if data:
            try:
                self._transport.sendall(data)
            except OSError as exc:
                self._fail(exc)
                raise

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise ConnectionError(f"HTTP/2 connection is gone: {self.error}") from self.error

    def _send_some(self, stream: H2Stream, view: memoryview) -> int:
        """Send what the window allows (at most one frame); 0 when there is no window."""
        with self._write_lock:
            self._raise_if_failed()
            if stream._closed or stream.reset_code is not None or stream.error is not None:
                raise BrokenPipeError(f"stream {stream.stream_id} is closed")
            try:
                room = min(self._h2.local_flow_control_window(stream.stream_id),
                           self._h2.max_outbound_frame_size, len(view))
                if room > 0:
                    self._h2.send_data(stream.stream_id, bytes(view[:room]))
            except h2.exceptions.ProtocolError as exc:
                raise BrokenPipeError(f"stream {stream.stream_id}: {exc!r}") from exc
            self._flush_locked()
        return max(room, 0)

    def _end_stream(self, stream: H2Stream) -> None:
        with self._write_lock:
            self._raise_if_failed()
            try:
                self._h2.end_stream(stream.stream_id)
            except h2.exceptions.ProtocolError as exc:
                raise BrokenPipeError(f"stream {stream.stream_id}: {exc!r}") from exc
            self._flush_locked()

    def _cancel(self, stream: H2Stream, unread: int) -> None:
        self._streams.pop(stream.stream_id, None)
        if self.error is not None:
            return
        if unread:  # the connection window must get back what the application never read
            self._acknowledge(stream.stream_id, unread)
        with self._write_lock:
            try:
                self._h2.reset_stream(stream.stream_id, h2.errors.ErrorCodes.CANCEL)
                self._flush_locked()
            except (OSError, h2.exceptions.ProtocolError):
                pass  # already closed, or the connection died: nothing left to cancel

    def _acknowledge(self, stream_id: int, n: int) -> None:
        """Give n consumed bytes back to the peer's window. Never blocks: the flusher sends."""
        if self.error is None:
            self._h2.acknowledge_received_data(n, stream_id)
            self._flush_wanted.set()


class TlsOverStream:
    """A TLS 1.3 client running inside a stream (wire.md §6.2 step 3), socket-like enough for
    H2ClientConnection. An SSLObject on memory BIOs: the stream carries the records, so no
    extra sockets or pump greenlets are needed."""

    def __init__(self, carrier: H2Stream) -> None:
        self.carrier = carrier
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = client_context().wrap_bio(self._incoming, self._outgoing,
                                              server_hostname=None)  # no SNI (§1.2)
        self._send_lock = gevent.lock.Semaphore()  # keeps records in sequence on the carrier

    def handshake(self, timeout: float = CONNECT_TIMEOUT) -> None:
        with gevent.Timeout(timeout, TimeoutError("TLS handshake inside the stream timed out")):
            while True:
                try:
                    self._tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._push()
                    self._pull()
            self._push()
        _check_alpn(self._tls.selected_alpn_protocol())

    def recv(self, n: int) -> bytes:
        """Decrypt what one carrier read brings, up to n bytes (several records at once)."""
        while True:
            try:
                data = self._tls.read(n)
            except ssl.SSLWantReadError:
                self._pull()
                continue
            except ssl.SSLZeroReturnError:
                return b""
            if self._outgoing.pending:  # a KeyUpdate answer: the reader must not block on it
                gevent.spawn(self._push)
            return self._read_buffered([data], n - len(data))

    def _read_buffered(self, parts: list[bytes], n: int) -> bytes:
        """Add the records already in the incoming buffer, without waiting for more."""
        while n > 0 and self._incoming.pending:
            try:
                part = self._tls.read(n)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            parts.append(part)
            n -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def sendall(self, data: bytes) -> None:
        with self._send_lock:
            view = memoryview(data)
            while view:
                view = view[self._tls.write(view):]
            self.carrier.sendall(self._outgoing.read())

    def close(self) -> None:
        self.carrier.close()

    def _push(self) -> None:
        with self._send_lock:
            data = self._outgoing.read()
            if data:
                self.carrier.sendall(data)

    def _pull(self) -> None:
        data = self.carrier.recv(READ_SIZE)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()


def connect(address: str | RelayAddress, timeout: float = CONNECT_TIMEOUT) -> H2ClientConnection:
    """TCP + TLS + HTTP/2 to a relay (the first hop), no SNI (wire.md §1.2)."""
    addr = RelayAddress.parse(address) if isinstance(address, str) else address
    with gevent.Timeout(timeout, TimeoutError(f"connecting to {addr.text} timed out")):
        sock = socket.create_connection((addr.host, addr.port))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Go does
            tls = client_context().wrap_socket(sock, server_hostname=None)
            _check_alpn(tls.selected_alpn_protocol())
        except BaseException:
            sock.close()
            raise
    return H2ClientConnection(tls, addr)


def connect_over(carrier: H2Stream, address: str | RelayAddress,
                 timeout: float = CONNECT_TIMEOUT) -> H2ClientConnection:
    """TLS + HTTP/2 to the next relay inside `carrier`, the previous hop's stream (§6.2)."""
    addr = RelayAddress.parse(address) if isinstance(address, str) else address
    transport = TlsOverStream(carrier)
    try:
        transport.handshake(timeout)
    except OSError as exc:
        if not carrier.ended:
            raise
        # The previous relay ended the stream (say, it could not dial us): say how.
        raise ConnectionError(
            f"TLS to {addr.text} failed: the carrier stream ended with status "
            f"{carrier.status}, reset code {carrier.reset_code}, error {carrier.error!r}") from exc
    return H2ClientConnection(transport, addr)


def _check_alpn(selected: str | None) -> None:
    if selected != "h2":
        raise HandshakeError(f"the relay selected ALPN {selected!r}, not h2")
