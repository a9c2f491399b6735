"""Is the relay serving? One application-level PING (wire.md §2.8) through its own listener,
TLS 1.3 + HTTP/2 like any client: the answer must be a PONG signed off with this relay's
public key. Stronger than "a process is alive", which is all the Go relay checked."""

import json
import socket
import ssl

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from wireleap_relay.upgrade import UpgradeError
from wireleap_relay.wire.payload import PING, InitPayload
from wireleap_relay.wire.status import pong

BODY_LIMIT = 4096


def loopback_for(host: str) -> str:
    """Where a relay listening on `host` can be reached from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return "::1" if host == "::" else host


def ping(host: str, port: int, relay_pk_b64: str, timeout: float = 10.0) -> None:
    """Raises UpgradeError unless the relay at host:port answers PONG as `relay_pk_b64`."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        body = _exchange(host, port, where, timeout)
    except (OSError, h2.exceptions.H2Error) as exc:
        raise UpgradeError(f"no PING answer from {where}: {exc}") from exc
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    expected = json.loads(pong(relay_pk_b64).to_json())
    if answer != expected:
        raise UpgradeError(f"{where} did not answer PONG as {relay_pk_b64}: {body[:200]!r}")


def _exchange(host: str, port: int, authority: str, timeout: float) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # relays use self-signed certificates (§3.2.2)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            context.wrap_socket(raw) as tls:
        if tls.selected_alpn_protocol() != "h2":
            raise OSError("the listener did not agree to HTTP/2")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":authority", authority), (":method", "PUT"),
                                   (":path", "/"), (":scheme", "https"),
                                   ("wl-payload", InitPayload(PING).to_json())])
        tls.sendall(conn.data_to_send())
        body = b""
        while True:
            data = tls.recv(65536)
            if not data:
                raise OSError("connection closed before the PONG ended")
            for event in conn.receive_data(data):
                if getattr(event, "stream_id", None) != stream:
                    continue
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                    if len(body) > BODY_LIMIT:
                        raise OSError("PING answer too long")
                elif isinstance(event, h2.events.StreamEnded):
                    return body
                elif isinstance(event, h2.events.StreamReset):
                    raise OSError(f"stream reset with code {event.error_code}")
            tls.sendall(conn.data_to_send())
