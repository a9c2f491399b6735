"""The loopback policy and the dial (wire.md §2.3 steps 9-10, §7.1)."""

import os
import socket

import pytest

from wireleap_relay.relay import addresses, dialer
from wireleap_relay.relay.dialer import DialPolicy
from wireleap_relay.relay.errors import DialFailed, DialTimeout, Refused, StreamFailure
from wireleap_relay.wire.payload import Remote

STRICT = DialPolicy(allow_loopback=False, timeout=5.0)
LOOSE = DialPolicy(allow_loopback=True, timeout=5.0)


@pytest.mark.parametrize("name,forbidden", [
    ("localhost", True), ("LOCALHOST", True), ("localhost.", True), ("LocalHost.", True),
    ("example.com", False), ("localhost.example.com", False), ("mylocalhost", False),
    ("127.0.0.1", False),  # an address, judged by addresses.refusal
])
def test_forbidden_name(name, forbidden):
    assert dialer.forbidden_name(name) is forbidden


@pytest.mark.parametrize("ip,kind", [
    ("127.0.0.1", "loopback"), ("127.1.2.3", "loopback"), ("127.255.255.254", "loopback"),
    ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"), ("::ffff:127.9.9.9", "loopback"),
    ("0.0.0.0", "loopback"), ("::", "loopback"), ("::ffff:0.0.0.0", "loopback"),
    ("169.254.169.254", "link-local"), ("::ffff:169.254.169.254", "link-local"),
    ("fe80::1%lo", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "non-unicast"), ("ff02::1", "non-unicast"), ("255.255.255.255", "non-unicast"),
    ("240.0.0.1", "non-unicast"), ("0.1.2.3", "non-unicast"),
    ("100.100.100.200", "metadata service"), ("fd00:ec2::254", "metadata service"),
    ("64:ff9b::7f00:1", "loopback"), ("64:ff9b::a9fe:a9fe", "link-local"),
    ("64:ff9b::808:808", None),
    ("192.0.2.7", "this host's own"), ("2001:db8::7", "this host's own"),
    ("10.0.0.1", None), ("192.168.1.1", None), ("100.64.0.1", None), ("fd00::2", None),
    ("8.8.8.8", None), ("2001:db8::1", None), ("::ffff:8.8.8.8", None), ("128.0.0.1", None),
])
def test_refused_addresses(ip, kind):
    own = frozenset(addresses.parse(a) for a in ("192.0.2.7", "2001:db8::7"))
    policy = addresses.AddressPolicy(allow_loopback=False)
    assert addresses.refusal(addresses.parse(ip), policy, own) == kind


@pytest.mark.parametrize("ip", ["10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1",
                                "100.64.0.1", "fd00::2", "fc00::1", "::ffff:10.1.2.3"])
def test_private_ranges_only_when_asked(ip):
    strict = addresses.AddressPolicy(allow_loopback=False, refuse_private=True)
    assert addresses.refusal(addresses.parse(ip), strict) == "private"
    assert addresses.refusal(addresses.parse(ip), addresses.AddressPolicy()) is None


def test_allow_loopback_allows_this_hosts_addresses_but_not_link_local():
    """Local test networks: every address of this host, never the metadata service."""
    own = frozenset({addresses.parse("192.0.2.7")})
    loose = addresses.AddressPolicy(allow_loopback=True)
    for ip in ("127.0.0.1", "::1", "0.0.0.0", "192.0.2.7"):
        assert addresses.refusal(addresses.parse(ip), loose, own) is None
    assert addresses.refusal(addresses.parse("169.254.169.254"), loose, own) == "link-local"


def test_this_hosts_addresses_are_read():
    local = addresses.local_addresses()
    assert addresses.parse("127.0.0.1") in local
    assert addresses.parse("::1") in local or not os.path.exists("/proc/net/if_inet6")
    with open("/proc/net/fib_trie") as f:
        trie = f.read()
    for addr in local:  # each one the kernel calls a local host address
        assert addr.version == 6 or f"|-- {addr}\n" in trie


def test_an_address_must_be_an_address():
    with pytest.raises(ValueError):
        addresses.parse("localhost")


@pytest.mark.parametrize("remote,kind,host", [
    ("target://169.254.169.254:80", "link-local", "169.254.169.254"),
    ("target://[::ffff:169.254.169.254]:80", "link-local", "::ffff:169.254.169.254"),
    ("wireleap://224.0.0.1:13490", "non-unicast", "224.0.0.1"),
    ("target://169.254.169.254", "link-local", "169.254.169.254"),  # before the port check
])
def test_never_dialed(remote, kind, host, monkeypatch):
    """Refused before any packet leaves, with loopback allowed or not (were it dialed,
    the test would fail instead of sending anything)."""
    def connect(*args):
        raise AssertionError("dialed")
    monkeypatch.setattr(dialer, "_connect", connect)
    for policy in (STRICT, LOOSE):
        exc = refused(remote, policy)
        assert exc.description == f"{kind} address '{host}' requested, refusing to dial"
        assert exc.code == 400


def test_this_hosts_own_address_refused():
    own = next((a for a in addresses.local_addresses()
                if a.version == 4 and not a.is_loopback), None)
    if own is None:
        pytest.skip("this host has no IPv4 address besides loopback")
    exc = refused(f"target://{own}:80")
    assert exc.description == f"this host's own address '{own}' requested, refusing to dial"


def refused(text, policy=STRICT, protocol="tcp"):
    with pytest.raises(Refused) as info:
        dialer.dial(Remote.parse(text), protocol, policy)
    return info.value


@pytest.mark.parametrize("remote,host", [
    ("target://127.1:80", "127.1"),
    ("target://LOCALHOST:80", "LOCALHOST"),
    ("target://[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1"),
    ("target://[::1]:80", "::1"),
    ("target://localhost:80", "localhost"),
    ("target://localhost.:80", "localhost."),
    ("target://127.0.0.1:80", "127.0.0.1"),
    ("target://127.1.2.3:80", "127.1.2.3"),
    ("target://0.0.0.0:80", "0.0.0.0"),
    ("target://[::]:80", "::"),
    ("target://127.0.0.1", "127.0.0.1"),  # refused before the missing port matters, like Go
    ("target://localhost", "localhost"),
])
def test_loopback_refused(remote, host):
    exc = refused(remote)
    assert exc.description == f"loopback address '{host}' requested, refusing to dial"
    assert str(exc) == exc.description
    assert exc.code == 400
    assert exc.origin_is_target is True


@pytest.mark.parametrize("scheme", ["wireleap", "https"])
def test_loopback_refused_next_hop_origin_is_relay(scheme):
    exc = refused(f"{scheme}://localhost:13490")
    assert exc.description == "loopback address 'localhost' requested, refusing to dial"
    assert exc.origin_is_target is False
    assert refused(f"{scheme}://127.1:13490").origin_is_target is False


@pytest.mark.parametrize("protocol", ["tcp4", "udp", "udp4"])
def test_loopback_refused_for_every_protocol(protocol):
    assert refused("target://127.1:53", protocol=protocol).code == 400


@pytest.fixture
def listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    yield srv
    srv.close()


def closed_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.1"])
def test_allow_loopback_connects(listener, host):
    port = listener.getsockname()[1]
    sock = dialer.dial(Remote.parse(f"target://{host}:{port}"), "tcp", LOOSE)
    try:
        peer, _ = listener.accept()
        sock.sendall(b"ping")
        assert peer.recv(4) == b"ping"
        assert sock.getpeername() == ("127.0.0.1", port)
        assert sock.gettimeout() is None
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        peer.close()
    finally:
        sock.close()


def test_allow_loopback_udp():
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    try:
        port = srv.getsockname()[1]
        sock = dialer.dial(Remote.parse(f"target://127.0.0.1:{port}"), "udp", LOOSE)
        try:
            assert sock.type == socket.SOCK_DGRAM
            sock.send(b"datagram")
            assert srv.recv(100) == b"datagram"
        finally:
            sock.close()
    finally:
        srv.close()


def test_connection_refused():
    port = closed_port()
    with pytest.raises(DialFailed) as info:
        dialer.dial(Remote.parse(f"target://127.0.0.1:{port}"), "tcp", LOOSE)
    exc = info.value
    assert exc.description == f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    assert exc.code == 502 and exc.origin_is_target is True


def test_connection_refused_next_hop():
    port = closed_port()
    with pytest.raises(DialFailed) as info:
        dialer.dial(Remote.parse(f"wireleap://127.0.0.1:{port}"), "tcp4", LOOSE)
    assert info.value.description == f"dial tcp4 127.0.0.1:{port}: connect: connection refused"
    assert info.value.origin_is_target is False


@pytest.mark.parametrize("policy", [STRICT, LOOSE])
def test_unknown_host(policy):
    with pytest.raises(DialFailed) as info:
        dialer.dial(Remote.parse("target://x.invalid:80"), "tcp", policy)
    assert info.value.description == "dial tcp: lookup x.invalid: no such host"
    assert info.value.code == 502 and info.value.origin_is_target is True


@pytest.mark.parametrize("remote,host,target", [
    ("target://x.invalid", "x.invalid", True),
    ("wireleap://relay.example.com", "relay.example.com", False),
    ("target://10.0.0.1", "10.0.0.1", True),
])
def test_missing_port(remote, host, target):
    with pytest.raises(DialFailed) as info:
        dialer.dial(Remote.parse(remote), "tcp", STRICT)
    assert info.value.description == f"dial tcp: address {host}: missing port in address"
    assert info.value.origin_is_target is target


def test_missing_port_with_loopback_allowed():
    with pytest.raises(DialFailed) as info:
        dialer.dial(Remote.parse("target://localhost"), "tcp", LOOSE)
    assert info.value.description == "dial tcp: address localhost: missing port in address"


def test_error_classes():
    assert (Refused.code, DialTimeout.code, DialFailed.code) == (400, 408, 502)
    for cls in (Refused, DialTimeout, DialFailed):
        assert issubclass(cls, StreamFailure)
    assert StreamFailure("x").origin_is_target is False
