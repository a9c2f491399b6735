"""The init payload (wire.md §2.2) and its sanity checks (§3)."""

import dataclasses
import json
import os

import pytest

from wireleap_relay.wire import payload
from wireleap_relay.wire.payload import InitPayload, PayloadError, Remote
from wireleap_relay.wire.sharetoken import Sharetoken

with open(os.path.join(os.path.dirname(__file__), os.pardir, "data",
                       "sharetoken_vectors.json")) as _f:
    V = json.load(_f)

TOKEN = Sharetoken.from_dict(json.loads(V["sharetoken"]["json"]))
PREFIX = "could not parse payload header: "


def target_obj():
    return json.loads(V["wl_payload_connect_target"])


def header(obj):
    return json.dumps(obj, separators=(",", ":"))


def parse_error(text):
    with pytest.raises(PayloadError) as info:
        payload.parse(text)
    return str(info.value)


def connect_error(p):
    with pytest.raises(PayloadError) as info:
        payload.check_connect(p)
    return str(info.value)


# --- vectors -------------------------------------------------------------------------------

def test_vector_connect_target():
    p = payload.parse(V["wl_payload_connect_target"])
    assert p == InitPayload("CONNECT", "tcp",
                            Remote("target", "example.com", 443, "target://example.com:443"),
                            TOKEN, "0.2.0")
    assert p.remote.is_target and p.remote.hostport == "example.com:443"
    assert p.to_json() == V["wl_payload_connect_target"]
    assert len(p.to_json()) == 648
    payload.check_connect(p)


def test_vector_connect_next_hop():
    p = payload.parse(V["wl_payload_connect_next_hop"])
    assert p.remote == Remote("wireleap", "relay2.example.net", 13490,
                              "wireleap://relay2.example.net:13490/wireleap")
    assert not p.remote.is_target
    assert p.remote.hostport == "relay2.example.net:13490"
    assert p.token == TOKEN
    assert p.to_json() == V["wl_payload_connect_next_hop"]
    payload.check_connect(p)


def test_vector_ping():
    p = payload.parse(V["wl_payload_ping"])
    assert p == InitPayload("PING")
    assert p.to_json() == V["wl_payload_ping"]


def test_ping_ignores_token():
    p = payload.parse('{"command":"PING","token":{"public_key":"bad="},"protocol":"x"}')
    assert p.token is None and p.command == "PING"


# --- Go-like leniency ----------------------------------------------------------------------

def test_unknown_keys_ignored():
    obj = target_obj()
    obj["padding"] = "x" * 100
    obj["token"]["future"] = {"a": 1}
    obj["token"]["contract"]["extra"] = [1]
    assert payload.parse(header(obj)) == payload.parse(V["wl_payload_connect_target"])


def test_keys_case_insensitive():
    obj = target_obj()
    renamed = {"COMMAND": obj["command"], "Protocol": obj["protocol"],
               "REMOTE": obj["remote"], "Token": obj["token"], "vErSiOn": obj["version"]}
    assert payload.parse(header(renamed)) == payload.parse(V["wl_payload_connect_target"])


def test_null_is_absent():
    p = payload.parse('{"command":"CONNECT","protocol":null,"remote":null,"token":null,'
                      '"version":null}')
    assert p == InitPayload("CONNECT", "", None, None, None)


def test_missing_command_is_empty():
    assert payload.parse("{}") == InitPayload("")


# --- parse errors --------------------------------------------------------------------------

@pytest.mark.parametrize("text", [None, ""])
def test_missing_header(text):
    assert parse_error(text) == PREFIX + "unexpected end of JSON input"


def test_not_json():
    message = parse_error('{"command":')
    assert message.startswith(PREFIX) and len(message) > len(PREFIX)


def test_padded_key():
    obj = target_obj()
    obj["token"]["public_key"] += "="
    message = parse_error(header(obj))
    assert "illegal base64 data at input byte 43" in message
    assert message == PREFIX + "token.public_key: illegal base64 data at input byte 43"


def test_short_public_key_is_an_error_not_a_crash():
    obj = target_obj()
    obj["token"]["public_key"] = "AAAAAAAAAAAAAAAAAAAAAA"  # 16 bytes
    with pytest.raises(PayloadError) as info:
        payload.parse(header(obj))
    assert str(info.value) == PREFIX + \
        "token.public_key: an ed25519 public key is 32 bytes, got 16"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("key,value,detail", [
    ("command", 5, "command: expected a string, got a number"),
    ("protocol", ["tcp"], "protocol: expected a string, got an array"),
    ("remote", 1, "remote: expected a string, got a number"),
    ("version", 2, "version: expected a string, got a number"),
    ("token", "x", "token: expected a JSON object, got a string"),
    ("token", True, "token: expected a JSON object, got a boolean"),
])
def test_wrong_types(key, value, detail):
    obj = target_obj()
    obj[key] = value
    assert parse_error(header(obj)) == PREFIX + detail


@pytest.mark.parametrize("text,detail", [
    ("[]", "payload: expected a JSON object, got an array"),
    ('"CONNECT"', "payload: expected a JSON object, got a string"),
    ("null", "payload: expected a JSON object, got null"),
])
def test_payload_must_be_object(text, detail):
    assert parse_error(text) == PREFIX + detail


def test_token_without_contract_is_an_error_not_a_crash():
    obj = target_obj()
    obj["token"]["contract"] = None
    assert parse_error(header(obj)) == PREFIX + "token.contract is missing"


@pytest.mark.parametrize("version", ["0.2", "v0.2.0", "0.2.0.0", "01.2.0", "latest", ""])
def test_version_must_be_semver(version):
    obj = target_obj()
    obj["version"] = version
    assert parse_error(header(obj)) == PREFIX + f"version: {version!r} is not a semantic version"


@pytest.mark.parametrize("version", ["0.2.0-rc.1", "0.2.1+build.5", "0.2.10"])
def test_version_semver_forms(version):
    obj = target_obj()
    obj["version"] = version
    assert payload.parse(header(obj)).version == version


@pytest.mark.parametrize("remote,detail", [
    ("target://h:99999", "remote 'target://h:99999': Port out of range 0-65535"),
    ("target://[::1", "remote 'target://[::1': Invalid IPv6 URL"),
    ("target://h:x", "remote 'target://h:x': Port could not be cast to integer value as 'x'"),
])
def test_bad_remote(remote, detail):
    obj = target_obj()
    obj["remote"] = remote
    assert parse_error(header(obj)) == PREFIX + detail


# --- Remote --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,scheme,host,port,hostport", [
    ("target://example.com:443", "target", "example.com", 443, "example.com:443"),
    ("target://LOCALHOST:80", "target", "LOCALHOST", 80, "LOCALHOST:80"),
    ("TARGET://Example.COM:1", "target", "Example.COM", 1, "Example.COM:1"),
    ("target://[::1]:80", "target", "::1", 80, "[::1]:80"),
    ("target://[2001:DB8::1]", "target", "2001:DB8::1", None, "[2001:DB8::1]"),
    ("wireleap://u:p@relay.example:13490/wl", "wireleap", "relay.example", 13490,
     "relay.example:13490"),
    ("target://h", "target", "h", None, "h"),
    ("target://:80", "target", "", 80, ":80"),
    ("https://127.1:8443?x=1", "https", "127.1", 8443, "127.1:8443"),
])
def test_remote_parse(text, scheme, host, port, hostport):
    r = Remote.parse(text)
    assert (r.scheme, r.hostname, r.port, r.hostport, r.text) == \
        (scheme, host, port, hostport, text)
    assert r.is_target == (scheme == "target")


# --- check_connect -------------------------------------------------------------------------

def connect(**changes):
    base = {"command": "CONNECT", "protocol": "tcp",
            "remote": Remote.parse("target://example.com:443"), "token": TOKEN,
            "version": "0.2.0"}
    base.update(changes)
    return InitPayload(**base)


@pytest.mark.parametrize("protocol", ["tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"])
def test_allowed_protocols(protocol):
    payload.check_connect(connect(protocol=protocol))


@pytest.mark.parametrize("scheme", ["wireleap", "https", "target"])
def test_allowed_schemes(scheme):
    payload.check_connect(connect(remote=Remote.parse(f"{scheme}://h:1")))


@pytest.mark.parametrize("version", [None, "0.2.0", "0.2.9", "0.2.0-rc.1", "1.2.0"])
def test_accepted_versions(version):
    # Only the minor is compared, like Go's check; absent is accepted.
    payload.check_connect(connect(version=version))


@pytest.mark.parametrize("changes,message", [
    ({"protocol": "unix"}, "unknown protocol in payload: unix"),
    ({"protocol": ""}, "unknown protocol in payload: "),
    ({"protocol": "TCP"}, "unknown protocol in payload: TCP"),
    ({"protocol": "ip4:icmp"}, "unknown protocol in payload: ip4:icmp"),
    ({"remote": Remote.parse("ftp://h:21")}, "unknown URL scheme in payload: ftp"),
    ({"remote": Remote.parse("h:21")}, "unknown URL scheme in payload: h"),
    ({"command": "BOGUS"}, "unknown command in payload: BOGUS"),
    ({"command": "connect"}, "unknown command in payload: connect"),
    ({"command": "PING"}, "unknown command in payload: PING"),
    ({"version": "9.9.9"}, "expecting version 0.2.x, got 9.9.9"),
    ({"version": "0.1.0"}, "expecting version 0.2.x, got 0.1.0"),
    ({"token": None}, "sharetoken is missing in payload"),
    ({"remote": None}, "remote is missing in payload"),
    ({"remote": Remote.parse("target://:80")}, "remote has no host: target://:80"),
])
def test_check_connect_texts(changes, message):
    assert connect_error(connect(**changes)) == message


def test_check_order():
    everything_wrong = connect(protocol="unix", remote=Remote.parse("ftp://h:1"),
                               command="BOGUS", version="9.9.9", token=None)
    assert connect_error(everything_wrong) == "unknown protocol in payload: unix"
    assert connect_error(dataclasses.replace(everything_wrong, protocol="tcp")) == \
        "unknown URL scheme in payload: ftp"
    assert connect_error(dataclasses.replace(everything_wrong, protocol="tcp",
                                           remote=Remote.parse("target://h:1"))) == \
        "unknown command in payload: BOGUS"
    assert connect_error(dataclasses.replace(everything_wrong, protocol="tcp",
                                           remote=Remote.parse("target://h:1"),
                                           command="CONNECT")) == \
        "expecting version 0.2.x, got 9.9.9"


def test_parsed_payload_checks():
    obj = target_obj()
    obj["protocol"] = "unix"
    assert connect_error(payload.parse(header(obj))) == "unknown protocol in payload: unix"
    del obj["version"]
    obj["protocol"] = "udp"
    payload.check_connect(payload.parse(header(obj)))


def test_to_json_omits_empty_fields():
    assert InitPayload("CONNECT").to_json() == '{"command":"CONNECT"}'
    assert InitPayload("CONNECT", "tcp", Remote.parse("target://h:1")).to_json() == \
        '{"command":"CONNECT","protocol":"tcp","remote":"target://h:1"}'


@pytest.mark.parametrize("text", ["[" * 5000, '{"a":' * 3000, "[" * 100000])
def test_deep_nesting_is_a_payload_error(text):
    with pytest.raises(payload.PayloadError) as caught:
        payload.parse(text)
    assert str(caught.value) == PREFIX + "exceeded max depth"
