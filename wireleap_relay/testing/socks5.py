"""A SOCKS5 front for circuits (RFC 1928, no authentication), like the Go client's forwarder.

CONNECT opens one circuit stream and splices it with the client's socket; the first side to
end closes both (a circuit has no half-close, wire.md §5.2). UDP ASSOCIATE opens one circuit
stream with protocol "udp" per client datagram, whose payload is exactly that datagram, and
relays every reply back as a SOCKS UDP datagram until the stream ends (wire.md §5.5).
"""

import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from typing import Protocol

import gevent
import gevent.pool
import gevent.server

from wireleap_relay.testing.h2client import CONNECT_TIMEOUT

log = logging.getLogger(__name__)

VERSION = 5
NO_AUTH, NO_ACCEPTABLE_METHOD = 0x00, 0xFF
CMD_CONNECT, CMD_UDP_ASSOCIATE = 0x01, 0x03
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 0x01, 0x03, 0x04
REP_SUCCEEDED, REP_GENERAL_FAILURE = 0x00, 0x01
REP_COMMAND_NOT_SUPPORTED, REP_ADDRESS_NOT_SUPPORTED = 0x07, 0x08
BUFSIZE = 32 * 1024  # the Go client's own splice buffer (wire.md §5.1)
UDP_IDLE_TIMEOUT = 60.0  # a reply stream with no traffic for this long is closed


class Stream(Protocol):
    """What `dial` returns: an H2Stream or a Circuit."""

    def sendall(self, data: bytes) -> None: ...
    def recv(self, n: int) -> bytes: ...
    def close(self) -> None: ...
    def settimeout(self, timeout: float | None) -> None: ...


Dial = Callable[[str, int, str], Stream]  # (target host, target port, "tcp"|"udp") -> stream


class Socks5Error(Exception):
    """A request we answer with a SOCKS error reply (or by hanging up)."""

    def __init__(self, reply: int, message: str) -> None:
        super().__init__(message)
        self.reply = reply


class Socks5Server:
    """`Socks5Server(dial=...)`, then `.start()`, `.address`, `.stop()`."""

    def __init__(self, listen: tuple[str, int] = ("127.0.0.1", 0), *, dial: Dial,
                 timeout: float = CONNECT_TIMEOUT) -> None:
        self.timeout = timeout  # for the SOCKS handshake
        self._dial = dial
        self._handlers = gevent.pool.Pool()  # unbounded; lets stop() end the handlers
        self._server = gevent.server.StreamServer(listen, self._handle, spawn=self._handlers)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address[:2]

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        """Stop listening and end every client connection and association at once."""
        self._server.stop(timeout=0)

    def _handle(self, sock: socket.socket, peer: tuple) -> None:
        try:
            with gevent.Timeout(self.timeout, TimeoutError("SOCKS handshake timed out")):
                command, host, port = _negotiate(sock)
            if command == CMD_CONNECT:
                self._connect(sock, host, port)
            else:
                self._associate(sock, peer[0])
        except Socks5Error as exc:
            log.info("socks5: %s", exc)
            _reply(sock, exc.reply)
        except OSError as exc:
            log.info("socks5: %s", exc)
        finally:
            sock.close()

    def _connect(self, sock: socket.socket, host: str, port: int) -> None:
        stream = self._open(host, port, "tcp")
        try:
            _reply(sock, REP_SUCCEEDED)
            _splice(sock, stream)
        finally:
            stream.close()

    def _open(self, host: str, port: int, protocol: str) -> Stream:
        try:
            return self._dial(host, port, protocol)
        except Exception as exc:  # any dial failure is reported to the SOCKS client alike
            raise Socks5Error(REP_GENERAL_FAILURE, f"dial {protocol} failed: {exc!r}") from exc

    def _associate(self, sock: socket.socket, client_ip: str) -> None:
        """The association lives as long as its TCP connection (RFC 1928 §7)."""
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        udp = socket.socket(family, socket.SOCK_DGRAM)
        greenlets = gevent.pool.Group()  # the datagram reader and every exchange
        try:
            udp.bind((self.address[0], 0))
            _reply(sock, REP_SUCCEEDED, udp.getsockname())
            greenlets.spawn(self._relay_datagrams, udp, client_ip, greenlets)
            while sock.recv(1024):  # nothing to read: wait for the client to hang up
                pass
        finally:
            greenlets.kill()
            udp.close()

    def _relay_datagrams(self, udp: socket.socket, client_ip: str,
                         exchanges: gevent.pool.Group) -> None:
        while True:
            datagram, peer = udp.recvfrom(65535)
            if peer[0] != client_ip:
                continue  # only the client that made the association may use it
            try:
                host, port, payload = _parse_udp(datagram)
            except Socks5Error as exc:
                log.info("socks5 udp: dropped: %s", exc)
                continue
            exchanges.spawn(self._udp_exchange, udp, peer, host, port, payload)

    def _udp_exchange(self, udp: socket.socket, peer: tuple, host: str, port: int,
                      payload: bytes) -> None:
        try:
            stream = self._open(host, port, "udp")
        except Socks5Error as exc:
            log.info("socks5 udp: %s", exc)
            return
        header = b"\x00\x00\x00" + _encode_address(host, port)
        try:
            stream.settimeout(UDP_IDLE_TIMEOUT)
            stream.sendall(payload)
            while reply := stream.recv(65535):
                udp.sendto(header + reply, peer)
        except OSError as exc:  # TimeoutError included: an idle reply stream ends here
            log.info("socks5 udp: %s", exc)
        finally:
            stream.close()


def _negotiate(sock: socket.socket) -> tuple[int, str, int]:
    """Method selection and the request (RFC 1928 §3, §4): (command, host, port)."""
    version, count = _recv_exact(sock, 2)
    if version != VERSION:
        raise OSError(f"not SOCKS5 (version byte {version})")
    if NO_AUTH not in _recv_exact(sock, count):
        sock.sendall(bytes([VERSION, NO_ACCEPTABLE_METHOD]))
        raise OSError("client offers no method without authentication")
    sock.sendall(bytes([VERSION, NO_AUTH]))
    version, command, _ = _recv_exact(sock, 3)
    if version != VERSION:
        raise OSError(f"not SOCKS5 (version byte {version})")
    host, port = _read_address(lambda n: _recv_exact(sock, n))
    if command not in (CMD_CONNECT, CMD_UDP_ASSOCIATE):
        raise Socks5Error(REP_COMMAND_NOT_SUPPORTED, f"command {command} not supported")
    return command, host, port


def _read_address(read: Callable[[int], bytes]) -> tuple[str, int]:
    """ATYP, address and port, from a reader returning exactly the bytes asked for."""
    atyp = read(1)[0]
    if atyp == ATYP_IPV4:
        host = socket.inet_ntop(socket.AF_INET, read(4))
    elif atyp == ATYP_IPV6:
        host = socket.inet_ntop(socket.AF_INET6, read(16))
    elif atyp == ATYP_DOMAIN:
        host = _decode_domain(read(read(1)[0]))
    else:
        raise Socks5Error(REP_ADDRESS_NOT_SUPPORTED, f"address type {atyp} not supported")
    (port,) = struct.unpack("!H", read(2))
    return host, port


def _decode_domain(raw: bytes) -> str:
    try:
        return raw.decode("idna")
    except UnicodeError as exc:
        raise Socks5Error(REP_ADDRESS_NOT_SUPPORTED, f"bad domain name {raw!r}") from exc


def _encode_address(host: str, port: int) -> bytes:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        return bytes([ATYP_DOMAIN, len(name)]) + name + struct.pack("!H", port)
    atyp = ATYP_IPV4 if ip.version == 4 else ATYP_IPV6
    return bytes([atyp]) + ip.packed + struct.pack("!H", port)


def _parse_udp(datagram: bytes) -> tuple[str, int, bytes]:
    """RSV, FRAG, address, port, data (RFC 1928 §7); fragments are dropped as allowed."""
    if len(datagram) < 4 or datagram[2] != 0:
        raise Socks5Error(REP_GENERAL_FAILURE, "short or fragmented datagram")
    offset = 3

    def read(n: int) -> bytes:
        nonlocal offset
        if offset + n > len(datagram):
            raise Socks5Error(REP_GENERAL_FAILURE, "truncated datagram header")
        offset += n
        return datagram[offset - n:offset]

    host, port = _read_address(read)
    return host, port, datagram[offset:]


def _reply(sock: socket.socket, reply: int, bound: tuple[str, int] = ("0.0.0.0", 0)) -> None:
    try:
        sock.sendall(bytes([VERSION, reply, 0]) + _encode_address(*bound[:2]))
    except OSError:
        pass  # the client is gone; nothing else to tell it


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise OSError("SOCKS client hung up mid-request")
        data += part
    return data


def _splice(sock: socket.socket, stream: Stream) -> None:
    """Pump both ways until either side ends; then both are closed (by the callers)."""
    pumps = [gevent.spawn(_pump, sock.recv, stream.sendall),
             gevent.spawn(_pump, stream.recv, sock.sendall)]
    try:
        gevent.wait(pumps, count=1)
    finally:
        stream.close()
        sock.close()
        gevent.killall(pumps)


def _pump(recv: Callable[[int], bytes], send: Callable[[bytes], None]) -> None:
    try:
        while data := recv(BUFSIZE):
            send(data)
    except OSError:
        pass  # a reset or a closed peer ends this direction like an EOF
