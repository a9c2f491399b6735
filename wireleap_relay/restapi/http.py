"""A small HTTP/1.1 server for the status API and the metrics: one request per connection,
answered and closed.

The API may be bound to a non-loopback address, so what one client can hold is bounded:
MAX_CLIENTS connections are served at once (more wait in the listen queue), a request's
line and headers are at most MAX_HEAD bytes, and a connection gets DEADLINE seconds in all
(a client sending a byte now and then cannot keep its slot). The answers are computed from
memory, so none of this ever waits on the master's other work, nor it on us.
"""

import email.utils
import http
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

import gevent
import gevent.pool
from gevent.server import StreamServer

log = logging.getLogger(__name__)

MAX_CLIENTS = 32
MAX_HEAD = 8192
DEADLINE = 10.0
DRAIN_LIMIT = 65536  # request body bytes read (and dropped) after answering
TEXT = "text/plain; charset=utf-8"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    nosniff: bool = False  # Go's http.Error adds X-Content-Type-Options


# What the server asks its owner: (method, path) -> the answer.
Handler = Callable[[str, str], Response]

BAD_REQUEST = Response(400, b"400 Bad Request")
HEAD_TOO_LARGE = Response(431, b"431 Request Header Fields Too Large")


class HttpServer:
    def __init__(self, listener: socket.socket, handler: Handler):
        self._handler = handler
        self._server = StreamServer(listener, self._serve,
                                    spawn=gevent.pool.Pool(MAX_CLIENTS))

    def start(self) -> None:
        self._server.start()

    def close(self) -> None:
        """Stop accepting; connections being served finish within their deadline."""
        self._server.close()

    def _serve(self, sock: socket.socket, _peer: object) -> None:
        try:
            with gevent.Timeout(DEADLINE, False):
                head = _read_head(sock)
                if head is not None:
                    method, response = self._answer(head)
                    sock.sendall(render(response, with_body=method != "HEAD"))
                    _drain(sock)
        except OSError:
            pass
        finally:
            sock.close()

    def _answer(self, head: bytes) -> tuple[str, Response]:
        if len(head) > MAX_HEAD:
            return "", HEAD_TOO_LARGE
        parsed = parse_request_line(head)
        if parsed is None:
            return "", BAD_REQUEST
        method, path = parsed
        try:
            return method, self._handler(method, path)
        except Exception:
            log.exception("status API: answering %s %s failed", method, path)
            return method, Response(500, b"500 Internal Server Error")


def _read_head(sock: socket.socket) -> bytes | None:
    """The request line and headers; more than MAX_HEAD bytes of them, or None if the
    client left first."""
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > MAX_HEAD:
            return data
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data


def parse_request_line(head: bytes) -> tuple[str, str] | None:
    """(method, path without the query) of an HTTP/1.x request; None if it is not one."""
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        method, target, version = line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        return None
    if not _TOKEN.fullmatch(method) or not re.fullmatch(r"HTTP/1\.[01]", version):
        return None
    if target.startswith(("http://", "https://")):  # absolute form, as proxies send it
        target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
    if not target.startswith("/"):
        return None
    return method, target.split("?", 1)[0]


def render(response: Response, with_body: bool = True) -> bytes:
    reason = http.HTTPStatus(response.status).phrase
    lines = [f"HTTP/1.1 {response.status} {reason}", f"Content-Type: {response.content_type}"]
    if response.nosniff:
        lines.append("X-Content-Type-Options: nosniff")
    lines += [f"Date: {email.utils.formatdate(usegmt=True)}",
              f"Content-Length: {len(response.body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (response.body if with_body else b"")


def _drain(sock: socket.socket) -> None:
    """Read what the client still sends (a request body we did not want) before closing:
    closing with unread bytes resets the connection, and the client may lose our answer."""
    sock.shutdown(socket.SHUT_WR)
    drained = 0
    while drained < DRAIN_LIMIT:
        chunk = sock.recv(4096)
        if not chunk:
            return
        drained += len(chunk)
