"""What a careless or hostile peer must not be able to do to a relay: leak streams and
sockets, shrink the connection window for good, kill a shared connection with one bad
header, or put a target address into the log."""

import json
import re
import time

import gevent
import pytest
from conftest import read_to_end, recv_exactly, wait_for
from gevent.server import StreamServer
from test_stream_errors import payload_for

from wireleap_relay.relay.limits import ConnectionLimits
from wireleap_relay.testing.h2client import connect

MiB = 1 << 20


@pytest.fixture(scope="module")
def backing(circuit3):
    return circuit3[-1]


def established_to(port: int) -> int:
    """Established TCP connections whose remote end is 127.0.0.1:port (/proc/net/tcp)."""
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[2] == f"0100007F:{port:04X}" and fields[3] == "01":
                count += 1
    return count


def test_client_reset_frees_a_remote_that_reads_nothing(backing, wallet):
    """Both pumps are stuck on a remote that never reads; the client's RST_STREAM must still
    end the splice and close the relay's socket to it."""
    def tarpit(sock, _addr):
        sock.sendall(b"!")
        gevent.sleep(60)  # reads nothing, ever

    server = StreamServer(("127.0.0.1", 0), tarpit)
    server.start()
    port = server.address[1]
    conn = connect(backing.relay.address)
    stream = conn.open_stream(payload_for(backing, wallet, f"target://127.0.0.1:{port}"))
    stream.settimeout(20)
    assert stream.recv(1) == b"!"
    sender = gevent.spawn(stream.sendall, b"x" * (8 * MiB))
    gevent.sleep(1.0)  # every buffer on the way is full now
    assert established_to(port) == 1
    stream.close()  # RST_STREAM(CANCEL), while the relay is blocked writing to the tarpit
    sender.kill()
    assert wait_for(lambda: established_to(port) == 0), "the relay kept the remote socket"
    conn.close()
    server.stop(timeout=0)


def test_failed_uploads_do_not_shrink_the_connection_window(backing, wallet, echo_server):
    """Bytes the relay could not deliver are still handed back to the connection window:
    after 24 MiB of uploads to remotes that hang up, the same connection still moves 4 MiB."""
    def hang_up(sock, _addr):
        sock.close()

    server = StreamServer(("127.0.0.1", 0), hang_up)
    server.start()
    conn = connect(backing.relay.address)
    for _ in range(24):
        stream = conn.open_stream(payload_for(backing, wallet,
                                              f"target://127.0.0.1:{server.address[1]}"))
        stream.settimeout(20)
        try:
            stream.sendall(b"u" * MiB)
        except (OSError, TimeoutError):
            pass  # the stream may end before all of it is sent
        read_to_end(stream)
        stream.close()
    good = conn.open_stream(payload_for(backing, wallet, f"target://{echo_server}"))
    good.settimeout(30)
    sender = gevent.spawn(good.sendall, b"e" * (4 * MiB))
    assert len(recv_exactly(good, 4 * MiB)) == 4 * MiB
    sender.get(timeout=30)
    good.close()
    conn.close()
    server.stop()


def test_a_non_utf8_header_costs_only_its_own_stream(backing, wallet, echo_server):
    conn = connect(backing.relay.address)
    bad = conn.open_stream(None, headers=[("wl-payload", b'{"command":"\xff\xfe"}')])
    bad.settimeout(20)
    read_to_end(bad)
    assert bad.status.code == 400
    good = conn.open_stream(payload_for(backing, wallet, f"target://{echo_server}"))
    good.settimeout(20)
    good.sendall(b"alive")
    assert recv_exactly(good, 5) == b"alive"
    good.close()
    conn.close()


@pytest.mark.parametrize("remote", ["target://secret-target.example:99999",
                                    "target://:80"])
def test_target_addresses_never_reach_the_log(backing, wallet, remote):
    obj = json.loads(payload_for(backing, wallet, "target://127.0.0.1:9"))
    obj["remote"] = remote
    conn = connect(backing.relay.address)
    stream = conn.open_stream(json.dumps(obj))
    stream.settimeout(20)
    read_to_end(stream)
    assert stream.status.code == 400
    conn.close()
    log = backing.log_text()
    assert "secret-target" not in log and "target://:80" not in log
    assert "(target error)" in log


def test_client_text_cannot_forge_log_lines(backing, wallet):
    payload = json.dumps({"command": "BOGUS\n2026/01/01 00:00:00 stream 9: forged"})
    conn = connect(backing.relay.address)
    stream = conn.open_stream(payload)
    stream.settimeout(20)
    read_to_end(stream)
    conn.close()
    assert "\n2026/01/01 00:00:00 stream 9: forged" not in backing.log_text()


def test_failed_streams_log_within_a_budget_per_connection(relays):
    """300 bad streams on one connection (a few bytes each) make the burst's lines and a
    summary, not 300 lines; another connection has its own budget."""
    relay = relays.start("log-budget", "backing")
    failed = re.compile(r"stream \d+: 400 ")
    started = time.monotonic()
    conn = connect(relay.relay.address)
    for _ in range(3):
        streams = [conn.open_stream("{") for _ in range(100)]
        for stream in streams:
            stream.settimeout(20)
            read_to_end(stream)
            assert stream.status.code == 400
    conn.close()
    assert wait_for(lambda: "were not logged" in relay.log_text())
    elapsed = time.monotonic() - started
    log = relay.log_text()
    logged = len(failed.findall(log))
    held_back = sum(int(n) for n in re.findall(
        r"(\d+) more failed streams on one connection were not logged", log))
    assert logged + held_back == 300
    limits = ConnectionLimits()
    assert logged <= limits.failure_log_burst + elapsed * limits.failure_logs_per_second + 1

    other = connect(relay.relay.address)
    stream = other.open_stream("{")
    stream.settimeout(20)
    read_to_end(stream)
    other.close()
    assert wait_for(lambda: len(failed.findall(relay.log_text())) == logged + 1)
