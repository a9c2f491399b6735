"""Every way a stream can fail, as a client sees it on the wire: the `wl-status` trailer
with its code, description and origin (wire.md §2.3, §2.5, §4.5, §7)."""

import json
import socket
import time

import nacl.signing
import pytest
from conftest import payload_for, read_to_end

from wireleap_relay.relay import addresses
from wireleap_relay.testing.h2client import connect
from wireleap_relay.testing.relayproc import free_port
from wireleap_relay.wire import b64
from wireleap_relay.wire.payload import InitPayload, Remote
from wireleap_relay.wire.sharetoken import ContractData, Sharetoken

FAKE_CONTRACT_SEED = b"\x01" * 32


@pytest.fixture(scope="module")
def backing(circuit3):
    return circuit3[-1]


@pytest.fixture(scope="module")
def strict(relays):
    """A relay as operators run it: loopback destinations refused, 1 s dial timeout."""
    return relays.start("strict", "backing", danger_zone={"allow_loopback": False},
                        timeout="1s")


def send(relay, payload: str | None, method: str = "PUT"):
    conn = connect(relay.relay.address)
    stream = conn.open_stream(payload, method=method)
    stream.settimeout(20)
    body = read_to_end(stream)
    conn.close()
    return stream, body


def assert_status(stream, code: int, description: str, origin: str):
    assert stream.status is not None, (stream.headers, stream.trailers, stream.reset_code)
    assert (stream.status.code, stream.status.description, stream.status.origin) == \
        (code, description, origin)
    assert dict(stream.headers)[":status"] == "200"
    assert [name for name, _ in stream.trailers] == ["wl-status"]
    assert "\n" not in stream.trailers[0][1]


def relay_origin(relay) -> str:
    return b64.encode(relay.relay.pubkey)


def test_bad_json(backing):
    stream, _ = send(backing, "{")
    assert stream.status.code == 400
    assert stream.status.description.startswith("could not parse payload header: ")
    assert stream.status.origin == relay_origin(backing)


@pytest.mark.parametrize("nesting", ["[" * 5000, '{"a":' * 3000, "[" * 5000 + "]" * 5000])
def test_deeply_nested_json_is_a_400(backing, nesting):
    """A few bytes with HPACK, so each must cost a 400, not a traceback and a 410."""
    stream, _ = send(backing, nesting)
    assert_status(stream, 400, "could not parse payload header: exceeded max depth",
                  relay_origin(backing))
    assert "Traceback" not in backing.log_text()


def test_missing_payload_header(backing):
    stream, _ = send(backing, None)
    assert_status(stream, 400, "could not parse payload header: unexpected end of JSON input",
                  relay_origin(backing))


@pytest.mark.parametrize("change,description", [
    ({"command": "BOGUS"}, "unknown command in payload: BOGUS"),
    ({"protocol": "unix"}, "unknown protocol in payload: unix"),
    ({"remote": "ftp://127.0.0.1:21"}, "unknown URL scheme in payload: ftp"),
    ({"version": "0.3.0"}, "expecting version 0.2.x, got 0.3.0"),
    ({"token": None}, "sharetoken is missing in payload"),
    ({"remote": None}, "remote is missing in payload"),
])
def test_payload_sanity_checks(backing, wallet, echo_server, change, description):
    stream, _ = send(backing, payload_for(backing, wallet, f"target://{echo_server}", **change))
    assert_status(stream, 400, description, relay_origin(backing))


def test_short_public_key_is_a_400_not_a_crash(backing, wallet, echo_server):
    obj = json.loads(payload_for(backing, wallet, f"target://{echo_server}"))
    obj["token"]["public_key"] = b64.encode(b"\x07" * 16)
    stream, _ = send(backing, json.dumps(obj))
    assert stream.status.code == 400
    assert "ed25519 public key is 32 bytes, got 16" in stream.status.description


def test_padded_base64_is_refused_like_go(backing, wallet, echo_server):
    obj = json.loads(payload_for(backing, wallet, f"target://{echo_server}"))
    obj["token"]["public_key"] += "="
    stream, _ = send(backing, json.dumps(obj))
    assert stream.status.code == 400
    assert "illegal base64 data at input byte 43" in stream.status.description


def test_bad_client_signature(backing, wallet, echo_server):
    obj = json.loads(payload_for(backing, wallet, f"target://{echo_server}"))
    nonce = obj["token"]["nonce"]
    obj["token"]["nonce"] = ("1" if nonce[0] != "1" else "2") + nonce[1:]
    stream, _ = send(backing, json.dumps(obj))
    assert_status(stream, 400, "sharetoken client signature is invalid", relay_origin(backing))


def test_token_for_another_relay(backing, circuit3, wallet, echo_server):
    other = circuit3[0]
    payload = payload_for(other, wallet, f"target://{echo_server}")
    stream, _ = send(backing, payload)
    assert_status(stream, 400, "sharetoken relay public key mismatch: expecting "
                  f"{relay_origin(backing)}, got {relay_origin(other)}", relay_origin(backing))


def test_untrusted_contract(backing, echo_server):
    rogue = nacl.signing.SigningKey(b"\x09" * 32)
    now = int(time.time())
    contract = ContractData.sign(rogue, now + 600, now + 1200)
    token = Sharetoken.mint(nacl.signing.SigningKey.generate(), backing.relay.pubkey, contract,
                            now)
    payload = InitPayload("CONNECT", "tcp", Remote.parse(f"target://{echo_server}"), token,
                          "0.2.0").to_json()
    stream, _ = send(backing, payload)
    assert_status(stream, 400, f"relay contract not found: {b64.encode(bytes(rogue.verify_key))}",
                  relay_origin(backing))


def test_expired_token(backing, echo_server):
    now = int(time.time())
    contract = ContractData.sign(nacl.signing.SigningKey(FAKE_CONTRACT_SEED), now - 1, now + 600)
    token = Sharetoken.mint(nacl.signing.SigningKey.generate(), backing.relay.pubkey, contract,
                            now)
    payload = InitPayload("CONNECT", "tcp", Remote.parse(f"target://{echo_server}"), token,
                          "0.2.0").to_json()
    stream, _ = send(backing, payload)
    assert_status(stream, 400, "sharetoken is expired", relay_origin(backing))


def test_duplicate_token_is_refused_even_after_a_failed_dial(backing, wallet):
    payload = payload_for(backing, wallet, f"target://127.0.0.1:{free_port()}")
    first, _ = send(backing, payload)
    assert first.status.code == 502  # the token was stored before the dial
    again, _ = send(backing, payload)
    assert_status(again, 400, "duplicate sharetoken", relay_origin(backing))


@pytest.mark.parametrize("host", ["127.0.0.1", "LOCALHOST", "127.1", "[::ffff:127.0.0.1]",
                                  "localhost."])
def test_loopback_refused(strict, wallet, echo_server, host):
    port = echo_server.rsplit(":", 1)[1]
    stream, _ = send(strict, payload_for(strict, wallet, f"target://{host}:{port}"))
    bare = host.strip("[]")
    assert_status(stream, 400, f"loopback address '{bare}' requested, refusing to dial",
                  "target")


def test_loopback_next_relay_refused_with_relay_origin(strict, wallet, circuit3):
    stream, _ = send(strict, payload_for(strict, wallet, circuit3[1].relay.address))
    assert_status(stream, 400, "loopback address '127.0.0.1' requested, refusing to dial",
                  relay_origin(strict))


def test_private_ranges_refused_when_configured(relays, wallet):
    """Only this host's own private address is dialed here if the setting did not reach the
    relay (loopback and own addresses are allowed for the test network)."""
    own = next((a for a in addresses.local_addresses()
                if any(a in net for net in addresses.PRIVATE)), None)
    if own is None:
        pytest.skip("this host has no address in a private range")
    relay = relays.start("no-private", "backing", refuse_private_addresses=True)
    host = f"[{own}]" if own.version == 6 else str(own)
    stream, _ = send(relay, payload_for(relay, wallet, f"target://{host}:9"))
    assert_status(stream, 400, f"private address '{own}' requested, refusing to dial",
                  "target")


def test_dial_refused(backing, wallet):
    port = free_port()
    stream, _ = send(backing, payload_for(backing, wallet, f"target://127.0.0.1:{port}"))
    assert_status(stream, 502, f"dial tcp 127.0.0.1:{port}: connect: connection refused",
                  "target")


def test_dial_to_next_relay_refused_has_relay_origin(backing, wallet):
    port = free_port()
    stream, _ = send(backing, payload_for(backing, wallet, f"wireleap://127.0.0.1:{port}"))
    assert_status(stream, 502, f"dial tcp 127.0.0.1:{port}: connect: connection refused",
                  relay_origin(backing))


def test_dial_timeout(relays, wallet):
    """A listener whose accept queue is full drops new SYNs, so the dial hangs."""
    slow = relays.start("slow-dial", "backing", timeout="1s")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    try:
        stream, _ = send(slow, payload_for(slow, wallet, f"target://127.0.0.1:{port}"))
        assert_status(stream, 408, f"dial tcp 127.0.0.1:{port}: i/o timeout", "target")
    finally:
        for s in fillers + [listener]:
            s.close()


def test_ping_answers_pong(backing):
    stream, body = send(backing, '{"command":"PING"}')
    origin = relay_origin(backing)
    assert body == f'{{"code":200,"description":"PONG","origin":"{origin}"}}\n'.encode()
    assert dict(stream.headers)["content-type"] == "text/plain; charset=utf-8"
    assert stream.status is None


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_other_methods_get_405(backing, method):
    stream, body = send(backing, None, method=method)
    headers = dict(stream.headers)
    assert headers[":status"] == "405"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body == b'{"code":405,"description":"HTTP method not allowed"}\n\n'
    assert len(body) == 54 and headers["content-length"] == "54"


def test_a_failed_stream_leaves_the_connection_usable(backing, wallet, echo_server):
    conn = connect(backing.relay.address)
    bad = conn.open_stream("{")
    bad.settimeout(20)
    read_to_end(bad)
    assert bad.status.code == 400
    good = conn.open_stream(payload_for(backing, wallet, f"target://{echo_server}"))
    good.settimeout(20)
    good.sendall(b"still here")
    assert good.recv(100) == b"still here"
    good.close()
    conn.close()
