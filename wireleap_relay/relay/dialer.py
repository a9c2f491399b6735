"""Dialing a stream's remote: the loopback policy and the connect, with Go-like error texts.

Unlike the Go relay, which only compares the host string with `localhost` and IP literals
(wire.md §7.1), the policy here is applied to every resolved address, and the connection is
made to exactly the addresses that were checked, so `LOCALHOST`, `127.1`,
`::ffff:127.0.0.1` or a DNS name pointing at 127.0.0.1 are all refused.
"""

import errno
import ipaddress
import socket
import time
from dataclasses import dataclass

import gevent

from wireleap_relay.relay.errors import DialFailed, DialTimeout, Refused
from wireleap_relay.wire.payload import Remote

_FAMILIES = {"4": socket.AF_INET, "6": socket.AF_INET6}


@dataclass(frozen=True)
class DialPolicy:
    allow_loopback: bool
    timeout: float


def forbidden_address(ip: str) -> bool:
    """Loopback or unspecified, including IPv4-mapped IPv6 forms."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback or addr.is_unspecified


def forbidden_name(host: str) -> bool:
    return host.lower().rstrip(".") == "localhost"


def _forbidden_literal(host: str) -> bool:
    """Go refuses loopback IP literals before dialing (wire.md §7.1), even without a port."""
    try:
        return forbidden_address(host)
    except ValueError:
        return False


def dial(remote: Remote, protocol: str, policy: DialPolicy) -> socket.socket:
    """Resolve, check and connect, all within the dial timeout, as Go counts the lookup in
    it. Raises Refused, DialTimeout or DialFailed."""
    target = remote.is_target
    host = remote.hostname
    refused = Refused(f"loopback address '{host}' requested, refusing to dial", target)
    if not policy.allow_loopback and forbidden_name(host):
        raise refused
    if not policy.allow_loopback and _forbidden_literal(host):
        raise refused
    if remote.port is None:
        raise DialFailed(f"dial {protocol}: address {host}: missing port in address", target)
    deadline = time.monotonic() + policy.timeout
    infos = _resolve(host, remote.port, protocol, policy.timeout, target)
    if not policy.allow_loopback and any(forbidden_address(i[4][0]) for i in infos):
        raise refused
    return _connect(infos, protocol, remote.hostport, deadline, target)


def _resolve(host: str, port: int, protocol: str, timeout: float, target: bool) -> list:
    family = _FAMILIES.get(protocol[-1], socket.AF_UNSPEC)
    kind = socket.SOCK_STREAM if protocol.startswith("tcp") else socket.SOCK_DGRAM
    try:
        with gevent.Timeout(timeout, DialTimeout(f"dial {protocol}: lookup {host}: i/o timeout",
                                                 target)):
            return socket.getaddrinfo(host, port, family, kind)
    except (socket.gaierror, UnicodeError, ValueError):
        # UnicodeError: names the IDNA codec refuses, such as "a..b".
        raise DialFailed(f"dial {protocol}: lookup {host}: no such host", target) from None


def _connect(infos: list, protocol: str, hostport: str, deadline: float,
             target: bool) -> socket.socket:
    """Try each resolved address in turn within one overall deadline (a blackholed IPv6
    address still leaves time for the IPv4 one)."""
    last: OSError | None = None
    for i, (fam, kind, proto, _, sockaddr) in enumerate(infos):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(fam, kind, proto)
        sock.settimeout(remaining / (len(infos) - i))  # leave the others their share
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.settimeout(None)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    if last is None or isinstance(last, TimeoutError):
        raise DialTimeout(f"dial {protocol} {hostport}: i/o timeout", target)
    raise DialFailed(f"dial {protocol} {hostport}: connect: {_go_errno_text(last)}", target)


def _go_errno_text(exc: OSError) -> str:
    if exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    return (exc.strerror or str(exc)).lower()
