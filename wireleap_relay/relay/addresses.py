"""Which destination addresses a relay refuses to dial: a relay is an open proxy for anyone
with a sharetoken, so it must not reach what only its own host should reach.

Always refused: link-local addresses (169.254.169.254 hands out cloud credentials), the
other known metadata services (Alibaba's 100.100.100.200, AWS's IPv6 fd00:ec2::254),
0.0.0.0/8, multicast and reserved ones. A NAT64 address (64:ff9b::/96) is judged by the
IPv4 address inside it. Refused unless `danger_zone.allow_loopback` (local test
networks): loopback, unspecified, and every address of this host's own interfaces, which
reach services bound to 0.0.0.0. Refused with `refuse_private_addresses`: the private
ranges (RFC 1918, carrier-grade NAT, IPv6 unique local). The Go relay refuses only loopback
literals and `localhost`.
"""

import ipaddress
import time
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))
METADATA = frozenset(ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254"))
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOCAL_CACHE_SECONDS = 10.0  # interfaces rarely change; reading /proc per dial is waste


@dataclass(frozen=True)
class AddressPolicy:
    allow_loopback: bool = False
    refuse_private: bool = False


def parse(ip: str) -> IPAddress:
    """An address as dialed: zone dropped, IPv4-mapped IPv6 as the IPv4 address it is."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr


def refusal(addr: IPAddress, policy: AddressPolicy,
            local: frozenset[IPAddress] = frozenset()) -> str | None:
    """Which kind of address this is, if it must not be dialed ("loopback", ...)."""
    if addr.is_loopback or addr.is_unspecified:
        return None if policy.allow_loopback else "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr in METADATA:
        return "metadata service"
    if addr in THIS_NETWORK:
        return "non-unicast"
    if addr.is_multicast or addr.is_reserved:
        return "non-unicast"
    if addr in local and not policy.allow_loopback:
        return "this host's own"
    if policy.refuse_private and any(addr in net for net in PRIVATE):
        return "private"
    return None


_local: tuple[float, frozenset[IPAddress]] = (float("-inf"), frozenset())


def local_addresses() -> frozenset[IPAddress]:
    """The addresses of this host's interfaces (Linux /proc), cached for a few seconds."""
    global _local
    read_at, addresses = _local
    if time.monotonic() - read_at > LOCAL_CACHE_SECONDS:
        addresses = frozenset(_read_ipv4() | _read_ipv6())
        _local = (time.monotonic(), addresses)
    return addresses


def _read_ipv4(path: str = "/proc/net/fib_trie") -> set[IPAddress]:
    """The `/32 host LOCAL` leaves of the kernel's routing trie are the local addresses."""
    found: set[IPAddress] = set()
    last = None
    try:
        with open(path) as f:
            for line in f:
                words = line.split()
                if len(words) == 2 and words[0].endswith("--"):
                    last = words[1]
                elif "host LOCAL" in line and last:
                    found.add(ipaddress.ip_address(last))
    except (OSError, ValueError):
        pass
    return found


def _read_ipv6(path: str = "/proc/net/if_inet6") -> set[IPAddress]:
    found: set[IPAddress] = set()
    try:
        with open(path) as f:
            for line in f:
                hex_address = line.split()[0]
                found.add(ipaddress.IPv6Address(int(hex_address, 16)))
    except (OSError, ValueError, IndexError):
        pass
    return found
