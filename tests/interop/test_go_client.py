"""The real Go client (0.6.3) through relays of this project, alone and mixed with the real
Go relay (0.6.1) in every circuit position: curl downloads through its SOCKS5 forwarder,
uploads, parallel transfers, failing targets and relays as the user sees them, and UDP
ASSOCIATE."""

import os
import signal
import socket
import struct
import subprocess

import pytest

from .conftest import (
    ROLES,
    LogMark,
    circuit_links,
    closed_port,
    curl_args,
    download,
    sha256_file,
    token_files,
    wait_for,
)


def use_circuit(client, relays) -> None:
    """Make the Go client use exactly `relays` (one per role, in role order)."""
    client.circuit(len(relays), [r.relay.address for r in relays])


def test_hops1_download_through_our_backing_relay(network, go_client, web, curl, tmp_path):
    backing = network.ours["backing"]
    use_circuit(go_client, [backing])
    mark, relay_log = LogMark(go_client.log_text), LogMark(backing.log_text)
    tokens_before = len(token_files(backing))
    out = str(tmp_path / "blob")
    done = download(curl, go_client, web.base + "/blob", out)
    assert (done.returncode, done.stdout) == (0, "200"), done.stderr
    assert sha256_file(out) == web.sha256
    assert circuit_links(mark.new()) == [("backing", backing.relay.address)]
    assert len(token_files(backing)) == tokens_before + 1  # one sharetoken per connection
    assert relay_log.new().count("tcp (target) via contract") == 1


CIRCUITS = {
    "ours-ours-ours": ("ours", "ours", "ours"),
    "go-ours-ours": ("go", "ours", "ours"),
    "ours-go-ours": ("ours", "go", "ours"),
    "ours-ours-go": ("ours", "ours", "go"),
    "go-go-go": ("go", "go", "go"),  # the reference: what the Go peers do among themselves
}


@pytest.mark.parametrize("kinds", list(CIRCUITS.values()), ids=list(CIRCUITS))
def test_hops3_download(network, go_client, web, curl, tmp_path, kinds):
    relays = [network.relay(kind, role) for kind, role in zip(kinds, ROLES, strict=True)]
    use_circuit(go_client, relays)
    mark = LogMark(go_client.log_text)
    before = [len(token_files(r)) for r in relays]
    out = str(tmp_path / "blob")
    done = download(curl, go_client, web.base + "/blob", out)
    assert (done.returncode, done.stdout) == (0, "200"), done.stderr
    assert sha256_file(out) == web.sha256
    assert circuit_links(mark.new()) == [(role, r.relay.address)
                                         for role, r in zip(ROLES, relays, strict=True)]
    # Every relay of the circuit, ours and Go, took the client's sharetoken for it.
    assert [len(token_files(r)) for r in relays] == [n + 1 for n in before]


@pytest.mark.parametrize("kinds", list(CIRCUITS.values()), ids=list(CIRCUITS))
def test_hops3_upload(network, go_client, web, curl, tmp_path, kinds):
    """The other direction: the client's request body through three relays."""
    use_circuit(go_client, [network.relay(kind, role)
                            for kind, role in zip(kinds, ROLES, strict=True)])
    upload = tmp_path / "upload"
    upload.write_bytes(web.blob)
    out = str(tmp_path / "digest")
    done = download(curl, go_client, web.base + "/sha256", out, "--data-binary", f"@{upload}",
                    "-H", "Content-Type: application/octet-stream", "-H", "Expect:")
    assert (done.returncode, done.stdout) == (0, "200"), done.stderr
    with open(out) as f:
        assert f.read() == web.sha256


@pytest.mark.parametrize("hops", [1, 3])
def test_parallel_downloads(network, go_client, web, curl, tmp_path, hops):
    """Six downloads at once through our relays: six concurrent streams, each with its own
    flow control."""
    use_circuit(go_client, [network.ours[role] for role in ROLES[3 - hops:]])
    outs = [str(tmp_path / f"blob{i}") for i in range(6)]
    procs = [subprocess.Popen(curl_args(curl, go_client, web.base + "/blob", out),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for out in outs]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=30)
        results.append((proc.returncode, stdout, stderr))
    assert [r[:2] for r in results] == [(0, "200")] * 6, results
    assert [sha256_file(out) for out in outs] == [web.sha256] * 6


# What the user of the Go client sees when the target (or the next relay) fails.

def socks_connect(client, port: int, payload: bytes) -> tuple[int, bytes]:
    """A raw SOCKS5 CONNECT to 127.0.0.1:`port` through the client: (reply code, every
    byte that came through the tunnel after sending `payload`)."""
    host, socks_port = client.socks_address.rsplit(":", 1)
    with socket.create_connection((host, int(socks_port)), timeout=10) as s:
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", port))
        reply = _recv_exactly(s, 10)
        if reply[1] != 0:
            return reply[1], b""
        s.sendall(payload)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return reply[1], data


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


GATEWAY_DOWN = b'{"code":502,"description":"gateway is unreachable or down"}\n\n'
# A race in the Go client's SOCKS forwarder, seen only when a Go relay ends a failed stream
# with RST_STREAM and no status: the tunnel then closes without a byte.
CLIENT_RACE = "error splicing initial connection: io: read/write on closed pipe"


def user_views(client, curl, tmp_path, port: int, tries: int) -> list[tuple]:
    """What a SOCKS user gets for 127.0.0.1:`port`, `tries` times by raw SOCKS5 and by
    curl."""
    views = []
    for _ in range(tries):
        views.append(("socks", *socks_connect(client, port, b"GET / HTTP/1.0\r\n\r\n")))
        done = download(curl, client, f"http://127.0.0.1:{port}/", str(tmp_path / "out"))
        views.append(("curl", done.returncode, done.stderr.strip()))
    return views


EMPTY_VIEW = {("socks", 0, b""), ("curl", 52, "curl: (52) Empty reply from server")}


def compare_with_go(network, go_client, curl, tmp_path, port: int, circuit) -> set:
    """The user's view through `circuit("ours")` and `circuit("go")`, a few times each:
    ours must be always the same, and what the Go relay gives unless the client's race
    empties the tunnel; returns ours."""
    use_circuit(go_client, circuit("ours"))
    mark = LogMark(go_client.socks_log_text)
    ours = user_views(go_client, curl, tmp_path, port, tries=3)
    assert CLIENT_RACE not in mark.new()
    use_circuit(go_client, circuit("go"))
    mark = LogMark(go_client.socks_log_text)
    go = user_views(go_client, curl, tmp_path, port, tries=3)
    while len(go) < 30 and not set(ours) <= set(go):  # until the race missed each kind
        go += user_views(go_client, curl, tmp_path, port, tries=1)
    assert len(set(ours)) == 2  # one outcome by raw SOCKS, one by curl
    assert set(ours) <= set(go)
    if other := set(go) - set(ours):
        assert other <= EMPTY_VIEW
        assert CLIENT_RACE in mark.new()
    return set(ours)


# What the Go client does with a failed circuit: a SOCKS success first, then a status line
# as tunnel data, which curl takes for an HTTP/0.9 answer.
FAILED_VIEW = {("socks", 0, GATEWAY_DOWN),
               ("curl", 1, "curl: (1) Received HTTP/0.9 when not allowed")}


def test_closed_target_port_looks_the_same_as_with_the_go_relay(network, go_client, curl,
                                                               tmp_path):
    port = closed_port()
    mark = LogMark(go_client.log_text)
    views = compare_with_go(network, go_client, curl, tmp_path, port,
                            lambda kind: [network.relay(kind, "backing")])
    assert views == FAILED_VIEW
    # Our relay sends the designed wl-status trailer (Go 0.6.1 never does): the client got it.
    assert f'splice error: {{"code":502,"description":"dial tcp 127.0.0.1:{port}: connect: ' \
           f'connection refused","origin":"target"}}' in mark.new()


def test_next_relay_down_looks_the_same_as_with_the_go_relay(network, go_client, curl,
                                                             tmp_path, web):
    """A fronting relay whose next hop (an entropic relay, enrolled, then killed) is gone."""
    dead = network.start_go("go-entropic-dead", "entropic")
    dead.proc.send_signal(signal.SIGKILL)  # gone without leaving the directory
    dead.proc.wait()
    fronting = network.ours["fronting"]
    mark = LogMark(fronting.log_text)
    views = compare_with_go(
        network, go_client, curl, tmp_path, web.server.server_port,
        lambda kind: [network.relay(kind, "fronting"), dead, network.ours["backing"]])
    assert views == FAILED_VIEW
    # The client sees only its inner TLS to the next hop break, whichever relay fronts.
    assert f"502 'dial tcp 127.0.0.1:{dead.relay.port}: connect: connection refused'" \
        in mark.new()


# UDP through the forwarder's UDP ASSOCIATE.

def udp_associate(client) -> tuple[socket.socket, tuple[str, int]]:
    host, socks_port = client.socks_address.rsplit(":", 1)
    control = socket.create_connection((host, int(socks_port)), timeout=10)
    control.sendall(b"\x05\x01\x00")
    assert control.recv(2) == b"\x05\x00"
    control.sendall(b"\x05\x03\x00\x01" + socket.inet_aton("0.0.0.0") + b"\x00\x00")
    reply = _recv_exactly(control, 10)
    assert reply[:2] == b"\x05\x00", f"UDP ASSOCIATE refused: {reply!r}"
    return control, (socket.inet_ntoa(reply[4:8]), struct.unpack(">H", reply[8:10])[0])


def socks_udp_header(host: str, port: int) -> bytes:
    return b"\x00\x00\x00\x01" + socket.inet_aton(host) + struct.pack(">H", port)


UDP_CIRCUITS = {"ours": ("ours",), "go": ("go",), "ours-ours-ours": ("ours", "ours", "ours")}
# How each backing relay logs a udp stream to a target.
UDP_LOGGED = {"ours": "udp (target) via contract", "go": "Dialing udp connection to (target)"}


@pytest.mark.parametrize("kinds", list(UDP_CIRCUITS.values()), ids=list(UDP_CIRCUITS))
def test_udp_associate(network, go_client, udp_echo_server, kinds):
    relays = [network.relay(kind, role) for kind, role in zip(kinds, ROLES[3 - len(kinds):],
                                                              strict=True)]
    use_circuit(go_client, relays)
    backing = relays[-1]
    log = LogMark(backing.log_text)
    control, relay_at = udp_associate(go_client)
    echo_host, echo_port = udp_echo_server
    header = socks_udp_header(echo_host, echo_port)
    with control, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.bind(("127.0.0.1", 0))
        for size in (1, 512, 1400, 4000):
            datagram = os.urandom(size)
            udp.sendto(header + datagram, relay_at)
            reply, _ = udp.recvfrom(65536)
            assert reply == header + datagram, f"{size}-byte datagram"
    # The client opens one circuit stream per datagram, with protocol udp at the backing relay.
    assert wait_for(lambda: log.new().count(UDP_LOGGED[kinds[-1]]) == 4, timeout=5), log.new()
