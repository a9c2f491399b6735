"""Dialing a stream's remote: the address policy (addresses.py) and the connect, with
Go-like error texts.

Unlike the Go relay, which only compares the host string with `localhost` and IP literals
(wire.md §7.1), the policy here is applied to every resolved address, and the connection is
made to exactly the addresses that were checked, so `LOCALHOST`, `127.1`,
`::ffff:127.0.0.1` or a DNS name pointing at 127.0.0.1 are all refused.
"""

import errno
import socket
import time
from dataclasses import dataclass

import gevent

from wireleap_relay.relay import addresses, resolver
from wireleap_relay.relay.errors import DialFailed, DialTimeout, Refused
from wireleap_relay.relay.sockopts import tune_tcp
from wireleap_relay.wire.payload import Remote

_FAMILIES = {"4": socket.AF_INET, "6": socket.AF_INET6}


@dataclass(frozen=True)
class DialPolicy:
    allow_loopback: bool
    timeout: float
    refuse_private: bool = False

    @property
    def addresses(self) -> addresses.AddressPolicy:
        return addresses.AddressPolicy(self.allow_loopback, self.refuse_private)


def forbidden_name(host: str) -> bool:
    return host.lower().rstrip(".") == "localhost"


def _literal(host: str) -> addresses.IPAddress | None:
    try:
        return addresses.parse(host)
    except ValueError:
        return None


def _check(addr: addresses.IPAddress, host: str, policy: DialPolicy, target: bool) -> None:
    kind = addresses.refusal(addr, policy.addresses, addresses.local_addresses())
    if kind is not None:
        raise Refused(f"{kind} address '{host}' requested, refusing to dial", target)


def dial(remote: Remote, protocol: str, policy: DialPolicy) -> socket.socket:
    """Resolve, check and connect, all within the dial timeout, as Go counts the lookup in
    it. Raises Refused, DialTimeout or DialFailed."""
    target = remote.is_target
    host = remote.hostname
    if not policy.allow_loopback and forbidden_name(host):
        raise Refused(f"loopback address '{host}' requested, refusing to dial", target)
    literal = _literal(host)
    if literal is not None:  # Go refuses loopback literals even without a port (§7.1)
        _check(literal, host, policy, target)
    if remote.port is None:
        raise DialFailed(f"dial {protocol}: address {host}: missing port in address", target)
    deadline = time.monotonic() + policy.timeout
    infos = _resolve(host, remote.port, protocol, policy.timeout, target)
    for info in infos:
        _check(addresses.parse(info[4][0]), host, policy, target)
    return _connect(infos, protocol, remote.hostport, deadline, target)


def _resolve(host: str, port: int, protocol: str, timeout: float, target: bool) -> list:
    family = _FAMILIES.get(protocol[-1], socket.AF_UNSPEC)
    kind = socket.SOCK_STREAM if protocol.startswith("tcp") else socket.SOCK_DGRAM
    too_slow = DialTimeout(f"dial {protocol}: lookup {host}: i/o timeout", target)
    try:
        # The timeout abandons the lookup for good (resolver.py): nothing waits on it.
        with gevent.Timeout(timeout, too_slow):
            return resolver.getaddrinfo(host, port, family, kind)
    except (socket.gaierror, socket.herror, UnicodeError, ValueError) as exc:
        # UnicodeError: names the IDNA codec refuses, such as "a..b".
        if isinstance(exc, OSError) and resolver.timed_out(exc):
            raise too_slow from None
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
            tune_tcp(sock)
        return sock
    if last is None or isinstance(last, TimeoutError):
        raise DialTimeout(f"dial {protocol} {hostport}: i/o timeout", target)
    raise DialFailed(f"dial {protocol} {hostport}: connect: {_go_errno_text(last)}", target)


def _go_errno_text(exc: OSError) -> str:
    if exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    return (exc.strerror or str(exc)).lower()
