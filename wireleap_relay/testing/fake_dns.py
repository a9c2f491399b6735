"""A DNS server on 127.0.0.1 for tests: it answers the names it was given (A and AAAA)
and reads and drops every query for any other name, as a DNS server that never answers.
Point a relay at it with gevent's c-ares variables (`env`)."""

import ipaddress
import struct

from gevent.server import DatagramServer

A, AAAA = 1, 28
NOERROR_ANSWER = 0x8180  # a response, recursion desired and available, no error
TTL = 60


class FakeDNS:
    def __init__(self, answers: dict[str, list[str]]):
        self.answers = {name.lower().rstrip("."): [ipaddress.ip_address(a) for a in addrs]
                        for name, addrs in answers.items()}
        self.dropped: list[str] = []  # names of the queries never answered
        self._server = DatagramServer(("127.0.0.1", 0), self._handle)

    def start(self) -> "FakeDNS":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def env(self) -> dict[str, str]:
        """What makes a relay's resolver ask this server only."""
        return {"GEVENTARES_SERVERS": "127.0.0.1",
                "GEVENTARES_UDP_PORT": str(self._server.address[1])}

    def _handle(self, query: bytes, peer: tuple) -> None:
        try:
            name, qtype, end = _question(query)
        except (ValueError, IndexError, struct.error):
            return
        if name not in self.answers:
            self.dropped.append(name)
            return
        version = 4 if qtype == A else 6 if qtype == AAAA else None
        records = [a for a in self.answers[name] if a.version == version]
        reply = struct.pack(">HHHHHH", struct.unpack(">H", query[:2])[0], NOERROR_ANSWER, 1,
                            len(records), 0, 0) + query[12:end]
        for addr in records:
            # The name as a pointer to the question's (offset 12).
            reply += struct.pack(">HHHIH", 0xC00C, qtype, 1, TTL, len(addr.packed))
            reply += addr.packed
        self._server.sendto(reply, peer)


def _question(query: bytes) -> tuple[str, int, int]:
    """The first question's name, type and where it ends."""
    labels, at = [], 12
    while query[at]:
        length = query[at]
        labels.append(query[at + 1:at + 1 + length].decode("ascii", "replace"))
        at += 1 + length
    qtype = struct.unpack(">H", query[at + 1:at + 3])[0]
    return ".".join(labels).lower(), qtype, at + 5
