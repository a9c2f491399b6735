"""One HTTP/2 server connection over a TLS socket, driven by hyper-h2.

The connection greenlet is the only reader: it feeds h2 and files events into per-stream
objects. Every write (an h2 call, `data_to_send`, `sendall`) happens under one lock. Stream
greenlets never read the socket, and the reader never waits for flow-control window, so a
slow stream cannot stall its neighbours.

Flow control is the back-pressure: a stream's inbound bytes are acknowledged to the peer
only once its tunnel has written them to the remote, so each stream buffers at most its
1 MiB window. The connection window is opened to the maximum, so a stalled stream can
never eat the window the other streams need.
"""

import logging
import time
from collections import deque
from collections.abc import Callable

import gevent
import gevent.event
import gevent.lock
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from wireleap_relay.relay.limits import (
    MAX_FRAME_SIZE,
    MAX_HEADER_LIST_SIZE,
    Budget,
    ConnectionLimits,
    ControlBudget,
)
from wireleap_relay.relay.sockio import write_all

log = logging.getLogger(__name__)

STREAM_WINDOW = 1 << 20
# Far more than one stream's window, so a few stalled streams cannot starve the others, yet
# a bound on what one connection can make the relay buffer.
CONNECTION_WINDOW = 16 * STREAM_WINDOW
READ_SIZE = 256 * 1024
WRITE_TIMEOUT = 60.0  # a peer that reads nothing for this long loses its connection
# Past this many queued DATA frames, small ones are merged: a flood of 1-byte frames must
# not cost a tuple each. Real clients never get here (UDP sends one datagram per stream).
MAX_QUEUED_FRAMES = 64
MERGE_BELOW = 16 * 1024


class StreamClosed(Exception):
    """The peer reset the stream, or the connection is gone."""


class ServerStream:
    """One request stream as its tunnel greenlet sees it."""

    def __init__(self, conn: "H2ServerConnection", stream_id: int, headers: dict[str, str]):
        self.conn = conn
        self.id = stream_id
        self.headers = headers
        self._inbound: deque[tuple[bytes, int]] = deque()
        self._readable = gevent.event.Event()
        self._window = gevent.event.Event()
        self.gone = gevent.event.Event()  # set once the peer reset or the connection died
        self.client_done = False  # END_STREAM received: the client sends no more
        self.reset = False  # RST_STREAM received or connection lost
        self.headers_sent = False
        self.closed = False
        self._cancelled = False  # the tunnel is done with this stream: stop waiting

    # --- filled in by the reader ---------------------------------------------------------

    def _on_data(self, data: bytes, flow_len: int) -> None:
        if len(self._inbound) >= MAX_QUEUED_FRAMES and len(self._inbound[-1][0]) < MERGE_BELOW:
            last, last_len = self._inbound.pop()
            self._inbound.append((last + data, last_len + flow_len))
        else:
            self._inbound.append((data, flow_len))
        self._readable.set()

    def _on_end(self) -> None:
        self.client_done = True
        self._readable.set()

    def _on_reset(self) -> None:
        self.reset = True
        self.gone.set()
        self._readable.set()
        self._window.set()

    def _on_window(self) -> None:
        self._window.set()

    def cancel(self) -> None:
        """Wake and stop any greenlet blocked in `read` or `send` on this stream."""
        self._cancelled = True
        self._readable.set()
        self._window.set()

    def _check_open(self) -> None:
        if self.reset or self._cancelled:
            raise StreamClosed(f"stream {self.id} is closed")

    # --- used by the tunnel --------------------------------------------------------------

    def read(self) -> tuple[bytes, int] | None:
        """Next inbound chunk and its flow-controlled size; None once the client ended.

        The caller acknowledges the size with `consumed` after writing the bytes out.
        """
        while True:
            if self._cancelled:
                raise StreamClosed(f"stream {self.id} is closed")
            if self._inbound:
                return self._inbound.popleft()
            self._check_open()
            if self.client_done:
                return None
            self._readable.clear()
            self._readable.wait()

    def consumed(self, flow_len: int) -> None:
        """Hand `flow_len` bytes of window back to the peer. Also for bytes that could not
        be delivered: the connection window must never shrink for good."""
        if flow_len:
            self.conn.call(lambda c: c.acknowledge_received_data(flow_len, self.id),
                           ignore_closed=True)

    def respond(self, headers: list[tuple[str, str]], end_stream: bool = False) -> None:
        self.headers_sent = True
        self.conn.call(lambda c: c.send_headers(self.id, headers, end_stream=end_stream))

    def window(self) -> int:
        """How many bytes the peer lets this stream send now; waits while that is none."""
        while True:
            self._check_open()
            self._window.clear()
            try:
                size = self.conn.h2.local_flow_control_window(self.id)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                raise StreamClosed(f"stream {self.id} is closed") from None
            if size > 0:
                return size
            self._window.wait()

    def send(self, data: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        """Send DATA as the peer's window allows; blocks only this stream while it waits.
        `headers`, the response's, go first and in the same write as the first frames."""
        view = memoryview(data)
        while view or headers is not None:
            self._check_open()
            self._window.clear()
            sent = self.conn.call(lambda c, v=view, h=headers: self._send_some(c, v, h))
            headers = None
            view = view[sent:]
            if view and not sent:
                self._window.wait()

    def _send_some(self, c: h2.connection.H2Connection, view: memoryview,
                   headers: list[tuple[str, str]] | None) -> int:
        """As many DATA frames as the window allows, in one go: they leave in one write."""
        if headers is not None:
            c.send_headers(self.id, headers)
            self.headers_sent = True
        sent, frame_size = 0, c.max_outbound_frame_size
        while sent < len(view):
            size = min(c.local_flow_control_window(self.id), frame_size, len(view) - sent)
            if size <= 0:
                break
            c.send_data(self.id, view[sent:sent + size].tobytes())
            sent += size
        return sent

    def finish(self, trailers: list[tuple[str, str]] | None = None) -> None:
        """End our side: trailers or an empty END_STREAM, then RST_STREAM(NO_ERROR) if the
        client is still sending, so it stops (RFC 9113 §8.1)."""
        if self.closed or self.reset:
            self._release()
            return
        self.closed = True

        def end(c: h2.connection.H2Connection) -> None:
            if trailers:
                c.send_headers(self.id, trailers, end_stream=True)
            else:
                c.end_stream(self.id)
            if not self.client_done:
                c.reset_stream(self.id, h2.errors.ErrorCodes.NO_ERROR)

        self.conn.call(end, ignore_closed=True)
        self._release()

    def _release(self) -> None:
        """Hand back the window of bytes that were received but never consumed. Forgotten
        first, so DATA arriving from now on is acknowledged by the reader itself."""
        self.conn.forget(self.id)
        leftover = sum(n for _, n in self._inbound)
        self._inbound.clear()
        if leftover:
            self.conn.call(lambda c: c.acknowledge_received_data(leftover, self.id),
                           ignore_closed=True)


class H2ServerConnection:
    def __init__(self, sock, on_stream: Callable[[ServerStream], None],
                 limits: ConnectionLimits = ConnectionLimits()):
        self.sock = sock
        sock.settimeout(WRITE_TIMEOUT)
        self.on_stream = on_stream
        self.limits = limits
        self._control = ControlBudget(limits)
        self._early_resets = Budget(limits.reset_burst, limits.resets_per_second)
        self._greeted = False  # the client's preface and SETTINGS arrived
        self._idle_since = time.monotonic()  # when the last stream ended
        self._window_opened = False  # the batch being read opened every stream's window
        self.streams: dict[int, ServerStream] = {}  # until each tunnel has ended
        self._lock = gevent.lock.Semaphore()
        self._dead = False
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None))
        # Our settings from the first byte: as current values (not pending ones) they go
        # out in the first SETTINGS frame and hold at once. Set as changes, h2 would apply
        # its own until the client acknowledged ours: 100 streams (a client opening 200
        # at once lost its connection), 64 KiB header lists, 64 KiB windows.
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_streams,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
        })
        self.h2.decoder.max_header_list_size = MAX_HEADER_LIST_SIZE
        self.h2.max_inbound_frame_size = MAX_FRAME_SIZE  # h2 copied its default at init

    def call(self, action: Callable[[h2.connection.H2Connection], object],
             ignore_closed: bool = False) -> object:
        """Run one h2 action and send what it produced, as the connection's only writer."""
        with self._lock:
            if self._dead:
                if ignore_closed:
                    return None
                raise StreamClosed("connection closed")
            try:
                result = action(self.h2)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                if ignore_closed:
                    return None
                raise StreamClosed("stream closed") from None
            self._flush()
            if self._dead and not ignore_closed:
                raise StreamClosed("connection closed")  # the write failed: not delivered
            return result

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            try:
                self._write_all(data)
            except OSError:  # TimeoutError too: the peer read nothing for WRITE_TIMEOUT
                self._die()

    def _write_all(self, data: bytes) -> None:
        """The socket's own timeout bounds each wait for the peer to read."""
        write_all(self.sock, data)

    def forget(self, stream_id: int) -> None:
        if self.streams.pop(stream_id, None) is not None and not self.streams:
            self._idle_since = time.monotonic()

    def serve(self) -> None:
        """Run the connection until the peer leaves or breaks the protocol."""
        def start(c: h2.connection.H2Connection) -> None:
            c.initiate_connection()
            c.increment_flow_control_window(CONNECTION_WINDOW - c.inbound_flow_control_window)

        # A deadline for the client's preface and SETTINGS, not a timeout per read.
        preface = gevent.spawn_later(self.limits.preface_timeout, self._no_preface)
        try:
            self.call(start)
            while not self._dead:
                try:
                    data = self.sock.recv(READ_SIZE)
                except TimeoutError:  # the socket's timeout is meant for writes
                    if self._idle_too_long():
                        self._close_idle()
                        break
                    continue
                except OSError:  # also once _no_preface closed the socket
                    break
                if not data:
                    break
                abuse = self._control.admit(data)
                if abuse is not None:
                    log.debug("closing a connection that %s faster than allowed", abuse)
                    self.close(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                    break
                events = self._receive(data)
                if events is None:
                    break
                for event in events:
                    if self._dead:  # closed for abuse meanwhile
                        break
                    self._dispatch(event)
                if self._window_opened:
                    self._window_opened = False
                    for stream in list(self.streams.values()):
                        stream._on_window()
                if self._idle_too_long():  # PINGs alone do not keep a connection
                    self._close_idle()
                    break
                gevent.sleep(0)  # the streams of this batch get to run before the next one
        finally:
            preface.kill(block=False)
            self._die()

    def _receive(self, data: bytes) -> list[h2.events.Event] | None:
        with self._lock:
            try:
                events = self.h2.receive_data(data)
            except (h2.exceptions.ProtocolError, ValueError) as exc:
                log.debug("closing connection on protocol error: %s", exc)
                events = None
            self._flush()  # acknowledgements, or the GOAWAY h2 queued for an error
            return events

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            if len(self.streams) >= self.limits.max_streams:
                self.call(lambda c: c.reset_stream(event.stream_id,
                                                   h2.errors.ErrorCodes.REFUSED_STREAM),
                          ignore_closed=True)
                self._spend_early_reset()
                return
            stream = ServerStream(self, event.stream_id, _decode_headers(event.headers))
            self.streams[event.stream_id] = stream
            if event.stream_ended:
                stream._on_end()
            self.on_stream(stream)
            return
        if isinstance(event, h2.events.WindowUpdated) and event.stream_id == 0:
            # Every stream may send more. They are woken once per read, after its events:
            # a flood of these costs a pass over the streams per read, not per frame.
            self._window_opened = True
            return
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self._greeted = True
            self._window_opened = True  # the initial window may have grown
            return
        stream = self.streams.get(getattr(event, "stream_id", 0))
        if isinstance(event, h2.events.StreamReset) and event.remote_reset and \
                stream is not None and not stream.headers_sent:
            self._spend_early_reset()
        if self._dead:
            return
        if isinstance(event, h2.events.DataReceived):
            if stream is None:
                self.call(lambda c: c.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id), ignore_closed=True)
            else:
                stream._on_data(event.data, event.flow_controlled_length)
        if stream is None:
            return
        if isinstance(event, h2.events.StreamEnded):
            stream._on_end()
        elif isinstance(event, h2.events.StreamReset):
            stream._on_reset()
        elif isinstance(event, h2.events.WindowUpdated):
            stream._on_window()

    def _close_idle(self) -> None:
        log.debug("closing a connection without streams for %gs", self.limits.idle_timeout)
        self.close()

    def _idle_too_long(self) -> bool:
        return not self.streams and \
            time.monotonic() - self._idle_since >= self.limits.idle_timeout

    def _no_preface(self) -> None:
        if not self._greeted:
            log.debug("closing a connection without an HTTP/2 preface")
            self._die()

    def _spend_early_reset(self) -> None:
        """A stream that cost a tunnel's start and gave the client nothing back."""
        if not self._early_resets.spend():
            log.debug("closing a connection that resets or overruns streams faster than "
                      "allowed")
            self.close(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)

    def _die(self) -> None:
        if self._dead:
            return
        self._dead = True
        for stream in list(self.streams.values()):
            stream._on_reset()
        try:
            self.sock.close()
        except OSError:
            pass

    def close(self, error: h2.errors.ErrorCodes = h2.errors.ErrorCodes.NO_ERROR) -> None:
        """Say goodbye to the peer (unless a stuck write holds the lock) and drop it."""
        if self._lock.acquire(timeout=1.0):
            try:
                if not self._dead:
                    self.h2.close_connection(error)
                    self._flush()
            finally:
                self._lock.release()
        self._die()


def _decode_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header bytes as text without ever failing: a stray non-UTF-8 byte must cost only
    its own stream (a 400 later), never the connection it shares with others."""
    return {name.decode("latin-1"): value.decode("utf-8", "replace")
            for name, value in headers}

