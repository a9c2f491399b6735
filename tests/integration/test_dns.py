"""Name lookups of a relay's dials (relay/resolver.py), against a fake DNS server on
127.0.0.1 that answers some names and never answers the others (issue 10, finding 6)."""

import pytest
from conftest import FAST, payload_for, read_to_end, recv_exactly, wait_for, warm_up
from gevent.server import StreamServer

from wireleap_relay.relay.selfstats import STATS_DIR_ENV
from wireleap_relay.testing.fake_dns import FakeDNS
from wireleap_relay.testing.footprint import back_to, settled, within
from wireleap_relay.testing.h2client import connect
from wireleap_relay.testing.relayproc import RelayProcess, make_home

SILENT = 40  # far more than the 10 threads that the system resolver's pool has
DIAL_TIMEOUT = 6


@pytest.fixture(scope="module")
def dns():
    server = FakeDNS({"good.test": ["127.0.0.1"], "six.test": ["::1"],
                      "both.test": ["127.0.0.1", "::1"]}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def relay(tmp_path_factory, contract, dns):
    root = tmp_path_factory.mktemp("dns")
    stats = root / "stats"
    stats.mkdir()
    # c-ares itself gives up on a silent server after 10 s: later than the dial timeout,
    # so the relay abandons lookups that are still running.
    env = dict(FAST, **dns.env, GEVENTARES_TIMEOUT="10", GEVENTARES_TRIES="1",
               **{STATS_DIR_ENV: str(stats)})
    proc = RelayProcess(make_home(str(root), "relay", contract.url, "backing", workers=1,
                                  timeout=f"{DIAL_TIMEOUT}s"), env=env).start()
    proc.stats = str(stats)
    yield proc
    proc.stop()


def echo_through(relay, wallet, target: str) -> bytes:
    conn = connect(relay.relay.address)
    try:
        stream = conn.open_stream(payload_for(relay, wallet, f"target://{target}"))
        stream.settimeout(20)
        stream.sendall(b"hello")
        return recv_exactly(stream, 5) if stream.status is None else b""
    finally:
        conn.close()


@pytest.fixture(scope="module")
def echo6():
    """An echo server on ::1 only."""
    try:
        server = StreamServer(("::1", 0), lambda s, _: s.sendall(s.recv(5)))
        server.start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    yield server.address[1]
    server.stop()


def test_names_resolve_through_the_configured_server(relay, wallet, echo_server):
    port = echo_server.rsplit(":", 1)[1]
    assert echo_through(relay, wallet, f"good.test:{port}") == b"hello"


def test_ipv6_answers_are_dialed(relay, wallet, echo6):
    assert echo_through(relay, wallet, f"six.test:{echo6}") == b"hello"
    # Both families: ::1 answers on this port, 127.0.0.1 refuses; one of them works.
    assert echo_through(relay, wallet, f"both.test:{echo6}") == b"hello"


def test_the_hosts_file_is_read(relay, wallet, echo_server):
    """`localhost` is in every /etc/hosts; the fake server never answers for it."""
    port = echo_server.rsplit(":", 1)[1]
    assert echo_through(relay, wallet, f"localhost:{port}") == b"hello"


def test_never_answered_lookups_stall_no_other_dial_and_leave_nothing(relay, wallet,
                                                                       dns, echo_server):
    port = echo_server.rsplit(":", 1)[1]
    warm_up(relay, wallet, f"good.test:{port}")
    master = relay.proc.pid
    baseline = settled(master, relay.stats)
    conns = [connect(relay.relay.address) for _ in range(4)]
    silent = [conns[i % 4].open_stream(payload_for(relay, wallet,
                                                   f"target://silent-{i}.test:{port}"))
              for i in range(SILENT)]
    assert wait_for(lambda: len(set(dns.dropped)) >= SILENT), "lookups did not reach DNS"
    # Every lookup is in flight and none will ever be answered; a name that resolves is
    # dialed at once all the same (with the thread pool it waited for the others).
    assert echo_through(relay, wallet, f"good.test:{port}") == b"hello"
    assert not any(stream.ended for stream in silent), "a silent lookup ended first"
    for i, stream in enumerate(silent):
        stream.settimeout(DIAL_TIMEOUT + 20)
        read_to_end(stream)
        assert stream.status is not None and stream.status.code == 408, stream.status
        assert stream.status.description == f"dial tcp: lookup silent-{i}.test: i/o timeout"
    for conn in conns:
        conn.close()
    # Nothing of the abandoned lookups stays: no thread, no greenlet, no socket.
    after = back_to(baseline, master, relay.stats)
    assert within(after, baseline), (after, baseline)


def test_a_name_the_server_does_not_know_fails_at_the_dial_timeout(relay, wallet):
    conn = connect(relay.relay.address)
    stream = conn.open_stream(payload_for(relay, wallet, "target://unknown.test:80"))
    stream.settimeout(DIAL_TIMEOUT + 20)
    read_to_end(stream)
    conn.close()
    assert (stream.status.code, stream.status.description) == \
        (408, "dial tcp: lookup unknown.test: i/o timeout")


def test_literal_shorthands_stay_addresses(relay, wallet, dns, echo_server):
    """`127.1` is the system resolver's shorthand for 127.0.0.1; c-ares alone would look
    it up as a name."""
    port = echo_server.rsplit(":", 1)[1]
    assert echo_through(relay, wallet, f"127.1:{port}") == b"hello"
    assert "127.1" not in dns.dropped
