"""The benchmark's HTTP target, in a process of its own so that serving costs the bench's
driver nothing: `python -m wireleap_relay.testing.bench_target --ready-file F`.

    GET /bytes/N   200, N incompressible bytes (a random block sent again and again)
    GET /hold/S    200 with a large Content-Length, then one byte every second for at most
                   S seconds (a slow stream: open at the relay, hardly any traffic)

Binds 127.0.0.1 only. One request per connection; the server closes it after the response.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

from wireleap_relay.fsutil import write_atomic  # noqa: E402

BLOCK = os.urandom(4 << 20)
MAX_BYTES = 8 << 30
MAX_HOLD = 600  # seconds
HEADER_LIMIT = 8192


def _request_path(sock: socket.socket) -> str | None:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > HEADER_LIMIT:
            return None
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    parts = data.split(b"\r\n", 1)[0].split()
    return parts[1].decode("latin-1") if len(parts) >= 2 and parts[0] == b"GET" else None


def _header(length: int) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % length)


def _send_bytes(sock: socket.socket, size: int) -> None:
    view = memoryview(BLOCK)
    # The header and the first bytes in one write, as a web server does.
    first = min(size, 64 << 10)
    sock.sendall(_header(size) + BLOCK[:first])
    size -= first
    while size > 0:
        n = min(size, len(BLOCK))
        sock.sendall(view[:n])
        size -= n


def _hold(sock: socket.socket, seconds: int) -> None:
    sock.sendall(_header(MAX_HOLD + 1) + b".")
    for _ in range(min(seconds, MAX_HOLD)):
        gevent.sleep(1.0)
        sock.sendall(b".")


def _handle(sock: socket.socket, _peer: tuple) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with gevent.Timeout(30):
            path = _request_path(sock)
        kind, _, arg = (path or "").strip("/").partition("/")
        if kind == "bytes" and arg.isdigit() and int(arg) <= MAX_BYTES:
            _send_bytes(sock, int(arg))
        elif kind == "hold" and arg.isdigit():
            _hold(sock, int(arg))
        else:
            sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
    except (OSError, gevent.Timeout):
        pass
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wireleap_relay.testing.bench_target")
    p.add_argument("--ready-file", required=True, help="write host:port here once listening")
    args = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    server = StreamServer(listener, _handle)
    server.start()
    stop = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    host, port = server.address[:2]
    write_atomic(args.ready_file, f"{host}:{port}".encode())
    stop.wait()
    server.stop(timeout=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
