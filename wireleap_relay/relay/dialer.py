"""Dialing a stream's remote: the loopback policy and the connect, with Go-like error texts.

Unlike the Go relay, which only compares the host string with `localhost` and IP literals
(wire.md §7.1), the policy here is applied to every resolved address, and the connection is
made to exactly the addresses that were checked, so `LOCALHOST`, `127.1`,
`::ffff:127.0.0.1` or a DNS name pointing at 127.0.0.1 are all refused.
"""

import errno
import ipaddress
import socket
from dataclasses import dataclass

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
    """Resolve, check and connect. Raises Refused, DialTimeout or DialFailed."""
    target = remote.is_target
    host = remote.hostname
    refused = Refused(f"loopback address '{host}' requested, refusing to dial", target)
    if not policy.allow_loopback and (forbidden_name(host) or _forbidden_literal(host)):
        raise refused
    network = protocol.rstrip("46")
    if remote.port is None:
        raise DialFailed(f"dial {protocol}: address {host}: missing port in address", target)
    family = _FAMILIES.get(protocol[-1], socket.AF_UNSPEC)
    kind = socket.SOCK_STREAM if network == "tcp" else socket.SOCK_DGRAM
    try:
        infos = socket.getaddrinfo(host, remote.port, family, kind)
    except socket.gaierror:
        raise DialFailed(f"dial {protocol}: lookup {host}: no such host", target) from None
    if not policy.allow_loopback and any(forbidden_address(i[4][0]) for i in infos):
        raise refused
    return _connect(infos, protocol, remote.hostport, policy.timeout, target)


def _connect(infos: list, protocol: str, hostport: str, timeout: float,
             target: bool) -> socket.socket:
    last: OSError | None = None
    for fam, kind, proto, _, sockaddr in infos:
        sock = socket.socket(fam, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except TimeoutError:
            sock.close()
            raise DialTimeout(f"dial {protocol} {hostport}: i/o timeout", target) from None
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.settimeout(None)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    reason = _go_errno_text(last)
    raise DialFailed(f"dial {protocol} {hostport}: connect: {reason}", target)


def _go_errno_text(exc: OSError | None) -> str:
    if exc is None or exc.errno is None:
        return str(exc)
    if exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    return (exc.strerror or str(exc)).lower()
