"""Circuits through real relay processes: 1, 2 and 3 hops, big transfers, concurrency,
back-pressure and UDP, driven by the project's gevent circuit client."""

import hashlib
import json
import os

import gevent
import pytest
from conftest import hops, read_to_end, recv_exactly, spawn_sender

from wireleap_relay.testing import circuit
from wireleap_relay.testing.h2client import connect
from wireleap_relay.wire import b64

MiB = 1 << 20


@pytest.mark.parametrize("n", [1, 2, 3])
def test_echo_through_n_hops(n, circuit3, wallet, echo_server):
    chain = [circuit3[-1]] if n == 1 else [circuit3[0], circuit3[-1]] if n == 2 else circuit3
    pipe = circuit.dial(hops(chain), echo_server, "tcp", *wallet.current())
    pipe.settimeout(30)
    pipe.sendall(b"hello through %d hops" % n)
    assert recv_exactly(pipe, 20) == b"hello through %d hops" % n
    assert dict(pipe.headers)[":status"] == "200"
    pipe.close()


def test_every_hop_stores_its_sharetoken_before_dialing(circuit3, wallet, echo_server,
                                                        contract):
    before = {p.relay.home.root: _stored(p) for p in circuit3}
    pipe = circuit.dial(hops(circuit3), echo_server, "tcp", *wallet.current())
    pipe.settimeout(30)
    pipe.sendall(b"x")
    assert recv_exactly(pipe, 1) == b"x"
    pipe.close()
    contract_dir = b64.encode(contract.contract_pubkey)
    for proc in circuit3:
        new = _stored(proc) - before[proc.relay.home.root]
        assert len(new) == 1, proc.relay.role
        path = os.path.join(proc.relay.home.sharetokens, contract_dir, new.pop())
        token = json.loads(open(path).read())
        assert token["relay_pubkey"] == b64.encode(proc.relay.pubkey)
        assert path.endswith(token["signature"] + ".json")
        assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def _stored(proc) -> set[str]:
    found = set()
    for _, _, files in os.walk(proc.relay.home.sharetokens):
        found |= {f for f in files if f.endswith(".json")}
    return found


def test_64_mib_both_directions_byte_identical_through_3_hops(circuit3, wallet, echo_server):
    size = 64 * MiB
    payload = os.urandom(MiB) * 64
    pipe = circuit.dial(hops(circuit3), echo_server, "tcp", *wallet.current())
    pipe.settimeout(60)
    sender = spawn_sender(pipe, payload)
    received = hashlib.sha256()
    got = 0
    while got < size:
        data = pipe.recv(MiB)
        assert data, f"stream ended after {got} bytes"
        received.update(data)
        got += len(data)
    sender.get(timeout=60)
    assert got == size
    assert received.hexdigest() == hashlib.sha256(payload).hexdigest()
    pipe.close()


def test_100_concurrent_streams_share_one_connection(circuit3, wallet, echo_server):
    backing = circuit3[-1]
    pool = circuit.ConnectionPool()
    servicekey, contract = wallet.current()

    def one(i: int) -> bytes:
        pipe = circuit.dial(hops([backing]), echo_server, "tcp", servicekey, contract,
                            pool=pool)
        pipe.settimeout(60)
        message = (b"stream %03d " % i) * 1000
        pipe.sendall(message)
        echoed = recv_exactly(pipe, len(message))
        pipe.close()
        return echoed == message

    jobs = [gevent.spawn(one, i) for i in range(100)]
    gevent.joinall(jobs, timeout=120, raise_error=True)
    assert all(job.value for job in jobs)
    assert len(pool._connections) == 1
    pool.close()


def test_stalled_reader_does_not_slow_its_neighbour(circuit3, wallet, source_server):
    """One stream's reader stops reading while the relay has far more to deliver than any
    window; another stream on the same connection still downloads 32 MiB to the end."""
    backing = circuit3[-1]
    pool = circuit.ConnectionPool()
    key, contract = wallet.current()
    stalled = circuit.dial(hops([backing]), source_server, "tcp", key, contract, pool=pool)
    stalled.sendall(b"%d\n" % (256 * MiB))
    stalled.settimeout(30)
    assert recv_exactly(stalled, MiB)  # it flows, then we stop reading it
    busy = circuit.dial(hops([backing]), source_server, "tcp", key, contract, pool=pool)
    busy.settimeout(60)
    busy.sendall(b"%d\n" % (32 * MiB))
    assert len(recv_exactly(busy, 32 * MiB)) == 32 * MiB
    assert len(pool._connections) == 1
    stalled.close()
    busy.close()
    pool.close()


def test_udp_datagrams_echo_through_3_hops(circuit3, wallet, udp_echo):
    pipe = circuit.dial(hops(circuit3), udp_echo, "udp", *wallet.current())
    pipe.settimeout(30)
    for datagram in (b"first", b"second datagram", os.urandom(1200)):
        pipe.sendall(datagram)
        assert pipe.recv(65536) == datagram  # one DATA frame is one datagram
    pipe.close()


def test_relay_reads_payload_and_pings_over_one_connection(circuit3):
    backing = circuit3[-1]
    pong = circuit.ping(backing.relay.address)
    assert (pong.code, pong.description) == (200, "PONG")
    assert pong.origin == b64.encode(backing.relay.pubkey)


def test_response_headers_wait_for_the_remote(circuit3, wallet, echo_server):
    """Like Go, the relay answers when the remote speaks: a client never waits for it."""
    backing = circuit3[-1]
    pipe = circuit.dial(hops([backing]), echo_server, "tcp", *wallet.current())
    gevent.sleep(0.3)
    assert pipe.headers is None
    pipe.sendall(b"ping")
    pipe.settimeout(30)
    assert recv_exactly(pipe, 4) == b"ping"
    assert dict(pipe.headers)[":status"] == "200"
    pipe.close()


def test_remote_close_ends_the_stream_cleanly(circuit3, wallet, source_server):
    backing = circuit3[-1]
    pipe = circuit.dial(hops([backing]), source_server, "tcp", *wallet.current())
    pipe.settimeout(30)
    pipe.sendall(b"1000\n")
    assert len(read_to_end(pipe)) == 1000
    assert pipe.status is None and pipe.reset_code in (None, 0)


def test_first_hop_connection_needs_no_sni_and_h2(circuit3):
    conn = connect(circuit3[0].relay.address)
    assert conn.usable
    conn.close()
