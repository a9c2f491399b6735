"""The listener: accept TCP, finish the TLS 1.3 handshake with ALPN h2, and run one HTTP/2
connection greenlet per client, which spawns one tunnel greenlet per stream."""

import logging
import socket
import ssl
import time

import gevent
import gevent.pool
from gevent.server import StreamServer

from wireleap_relay.relay import streamlog, tunnel
from wireleap_relay.relay.h2conn import H2ServerConnection, ServerStream
from wireleap_relay.relay.sockopts import tune_tcp

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0  # Go's HTTP/2 server also wants the client preface within 10 s
BACKLOG = 1024
SETTLE = 0.5  # seconds without streams before a stopping server closes its connections


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


class RelayServer:
    def __init__(self, listener: socket.socket, tls: ssl.SSLContext,
                 context: tunnel.RelayContext, max_connections: int = 4096):
        self.tls = tls
        self.context = context
        self.connections: set[H2ServerConnection] = set()
        self.tunnels = gevent.pool.Group()
        # A full pool stops accepting: further clients wait in the listen queue, where
        # another worker may take them, instead of each costing a greenlet and TLS state.
        self._server = StreamServer(listener, self._serve_connection,
                                    spawn=gevent.pool.Pool(max_connections))

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address[:2]

    def start(self) -> None:
        self._server.start()

    def stop_accepting(self) -> None:
        self._server.close()

    def stop(self, grace: float) -> None:
        """Stop accepting, let running streams finish up to `grace` seconds, then close.

        Connections accepted a moment ago may not have sent their first stream yet: wait
        until no stream has been running for SETTLE seconds, so none is cut before it began.
        """
        self.stop_accepting()
        deadline = time.monotonic() + grace
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if self.tunnels:
                self.tunnels.join(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= SETTLE:
                break
            else:
                gevent.sleep(0.05)
        for conn in list(self.connections):
            conn.close()

    def _serve_connection(self, sock: socket.socket, peer: tuple) -> None:
        tune_tcp(sock)
        try:
            # A deadline for the whole handshake, not a timeout per read: a client
            # sending a byte every few seconds must not hold a connection slot for long.
            with gevent.Timeout(HANDSHAKE_TIMEOUT, TimeoutError("TLS handshake too slow")):
                tls_sock = self.tls.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", peer[0], exc)
            sock.close()
            return
        if tls_sock.selected_alpn_protocol() != "h2":
            tls_sock.close()  # only HTTP/2 can carry tunnels
            return
        conn = H2ServerConnection(tls_sock, self._spawn_tunnel)
        meter = self.context.meter
        meter.connections += 1
        meter.active_connections += 1
        self.connections.add(conn)
        try:
            conn.serve()
        finally:
            self.connections.discard(conn)
            meter.active_connections -= 1
            streamlog.connection_ended(conn)

    def _spawn_tunnel(self, stream: ServerStream) -> None:
        self.tunnels.spawn(tunnel.handle, stream, self.context)
