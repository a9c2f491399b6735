"""Name lookups for dials, with c-ares (gevent's `ares` resolver): a lookup that never
answers is abandoned at the dial timeout and holds nothing the other dials need.

gevent's default resolver runs the system's getaddrinfo in the hub's thread pool (10
threads): a timeout abandons the waiting greenlet, not the thread, so about ten names
whose DNS server never answers stall every lookup of the worker (issue 10, finding 6).
c-ares sends its queries from the event loop; an abandoned query is dropped by c-ares
after its own retries, costing a few hundred bytes meanwhile and no thread or greenlet.

Like the system resolver, c-ares reads /etc/resolv.conf (nameservers, search, ndots,
`options timeout: attempts:`) and answers from /etc/hosts first; both IPv4 and IPv6
results come back. What it does not do is nsswitch.conf (mDNS, LDAP, nss-resolve): a
relay resolves public names, files then DNS. gevent's own variables change it
(GEVENTARES_SERVERS, GEVENTARES_UDP_PORT, ...): the tests point it at a fake DNS server.
"""

import functools
import re
import socket

from gevent.resolver.ares import Resolver


@functools.cache
def _resolver() -> Resolver:
    # One channel per process, made on first use: after the worker's hub exists.
    return Resolver()


ARES_ETIMEOUT = 12  # ares.h: no server answered within c-ares' own timeout and tries
# What inet_aton may take for an IPv4 address ("127.1", "0x7f.1", "2130706433").
_NUMERIC = re.compile(r"[0-9a-fA-FxX.]+")


def getaddrinfo(host: str, port: int, family: int, kind: int) -> list:
    """socket.getaddrinfo's answer, from c-ares; raises socket.gaierror or socket.herror
    for names that do not resolve. Abandon it with a gevent.Timeout."""
    return _resolver().getaddrinfo(_numeric_ipv4(host) or host, port, family, kind)


def _numeric_ipv4(host: str) -> str | None:
    """The dotted quad of an IPv4 address in a shorthand that the system resolver takes
    and c-ares does not, so `127.1` is still the loopback address it is (and refused)."""
    if not _NUMERIC.fullmatch(host):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None



def timed_out(exc: OSError) -> bool:
    """A lookup c-ares gave up on for want of an answer, not one answered "no such name"."""
    return isinstance(exc, socket.gaierror) and exc.errno == ARES_ETIMEOUT
