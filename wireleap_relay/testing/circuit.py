"""Wireleap circuits built the way the Go client builds them (wire.md §6.2), and PING.

Hop 1 is a pooled TLS+HTTP/2 connection shared by every circuit through that relay (§1.4); each
further hop is a new TLS+HTTP/2 connection inside the previous hop's stream, carrying one stream.
Every hop gets a fresh sharetoken minted for its relay with the same servicekey.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import gevent.lock
import nacl.signing

from wireleap_relay.testing.h2client import (
    CONNECT_TIMEOUT,
    H2ClientConnection,
    H2Stream,
    RelayAddress,
    connect,
    connect_over,
    parse_status,
)
from wireleap_relay.wire.payload import CLIENT_RELAY_VERSION, CONNECT, PING, InitPayload, Remote
from wireleap_relay.wire.sharetoken import ContractData, Sharetoken
from wireleap_relay.wire.status import Status

PING_BODY_LIMIT = 64 * 1024  # a PONG is about 90 bytes; more means the peer is no relay


class ConnectionPool:
    """First-hop connections, one per relay host:port, shared by circuits (wire.md §1.4).

    A new connection replaces one that died, got GOAWAY or has no room for another stream.
    """

    def __init__(self, timeout: float = CONNECT_TIMEOUT) -> None:
        self.timeout = timeout
        self._connections: dict[tuple[str, int], H2ClientConnection] = {}
        self._lock = gevent.lock.Semaphore()  # one dial per address at a time

    def get(self, address: RelayAddress) -> H2ClientConnection:
        with self._lock:
            conn = self._connections.get((address.host, address.port))
            if conn is None or not conn.usable:
                conn = connect(address, self.timeout)
                self._connections[(address.host, address.port)] = conn
            return conn

    def close(self) -> None:
        connections, self._connections = self._connections, {}
        for conn in connections.values():
            conn.close()


DEFAULT_POOL = ConnectionPool()


@dataclass
class Circuit:
    """A built circuit: the last hop's stream is the user's byte pipe (socket-like)."""

    streams: list[H2Stream] = field(default_factory=list)  # one per hop
    connections: list[H2ClientConnection] = field(default_factory=list)  # hops 2..n

    @property
    def stream(self) -> H2Stream:
        return self.streams[-1]

    @property
    def status(self) -> Status | None:
        return self.stream.status

    @property
    def reset_code(self) -> int | None:
        return self.stream.reset_code

    @property
    def headers(self) -> list[tuple[str, str]] | None:
        return self.stream.headers

    def settimeout(self, timeout: float | None) -> None:
        self.stream.settimeout(timeout)

    def recv(self, n: int) -> bytes:
        return self.stream.recv(n)

    def sendall(self, data: bytes) -> None:
        self.stream.sendall(data)

    def shutdown_write(self) -> None:
        self.stream.shutdown_write()

    def close(self, linger: bool = False) -> None:
        """Cancel the last stream. Then, unless `linger` (what the Go client does: the inner
        connections idle for minutes, wire.md §1.4), tear down the hops below it too."""
        if self.streams:
            self.stream.close()
        if linger:
            return
        for conn in reversed(self.connections):
            conn.close()  # closes its carrier stream as well
        for stream in self.streams:
            stream.close()


def hop_payload(remote: str, protocol: str, servicekey: nacl.signing.SigningKey,
                relay_pubkey: bytes, contract: ContractData) -> str:
    """The CONNECT payload for one hop, with a fresh sharetoken for that relay (wire.md §6.2)."""
    token = Sharetoken.mint(servicekey, relay_pubkey, contract, int(time.time()))
    return InitPayload(CONNECT, protocol, Remote.parse(remote), token,
                       CLIENT_RELAY_VERSION).to_json()


def dial(hops: Sequence[tuple[str, bytes]], target: str, protocol: str,
         servicekey: nacl.signing.SigningKey, contract: ContractData, *,
         pool: ConnectionPool | None = None, timeout: float = CONNECT_TIMEOUT) -> Circuit:
    """Build a circuit through `hops` [(relay address, relay pubkey), ...] to `target`
    ("host:port", IPv6 in brackets) with `protocol` "tcp" or "udp" (for the last hop only;
    relay hops are always "tcp"). Returns without waiting for any response (wire.md §6.2)."""
    if not hops:
        raise ValueError("a circuit needs at least one hop")
    addresses = [RelayAddress.parse(address) for address, _ in hops]
    remotes = [address.text for address in addresses[1:]] + [f"target://{target}"]
    circuit = Circuit()
    try:
        conn = (pool or DEFAULT_POOL).get(addresses[0])
        for i, (address, (_, relay_pubkey)) in enumerate(zip(addresses, hops, strict=True)):
            if i:
                conn = connect_over(circuit.stream, address, timeout)
                circuit.connections.append(conn)
            last = i == len(hops) - 1
            payload = hop_payload(remotes[i], protocol if last else "tcp", servicekey,
                                  relay_pubkey, contract)
            circuit.streams.append(
                conn.open_stream(payload, authority=address.authority, path=address.path))
    except BaseException:
        circuit.close()
        raise
    return circuit


def ping(address: str, *, pool: ConnectionPool | None = None,
         timeout: float = CONNECT_TIMEOUT) -> Status:
    """The application-level PING (wire.md §2.8): the relay's PONG status from the body."""
    addr = RelayAddress.parse(address)
    stream = (pool or DEFAULT_POOL).get(addr).open_stream(
        InitPayload(PING).to_json(), authority=addr.authority, path=addr.path)
    stream.settimeout(timeout)
    try:
        body = _read_all(stream, PING_BODY_LIMIT)
    finally:
        stream.close()
    status = parse_status(body.decode("utf-8", "replace"))
    if status is None:
        raise ValueError(f"not a PONG from {address}: {body[:200]!r}")
    return status


def _read_all(stream: H2Stream, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size <= limit and (data := stream.recv(limit)):
        parts.append(data)
        size += len(data)
    return b"".join(parts)
