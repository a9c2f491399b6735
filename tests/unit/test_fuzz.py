"""Fuzzing what strangers and operators hand the relay: any `wl-payload` (with any
sharetoken in it) ends in a payload or sharetoken error, which the tunnel answers with a
4xx status, never in another exception, which would be a traceback and a 410; any
config.json ends in `check-config`'s list of problems.

Deterministic (derandomize) so that CI is reproducible; WIRELEAP_FUZZ_EXAMPLES=N explores
more. Each example is one call, so thousands run in a few seconds.
"""

import json
import os
import time

import nacl.signing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wireleap_relay import config
from wireleap_relay.wire import b64, payload, sharetoken
from wireleap_relay.wire.payload import InitPayload, Remote
from wireleap_relay.wire.sharetoken import ContractData, Sharetoken

EXAMPLES = int(os.environ.get("WIRELEAP_FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

RELAY_KEY = nacl.signing.SigningKey(b"\x02" * 32)
CONTRACT_KEY = nacl.signing.SigningKey(b"\x03" * 32)
NOW = int(time.time())

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | \
    st.text(max_size=40)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
# Strings shaped like what the fields hold: base64 of any length, URLs, versions, numbers.
field_strings = st.one_of(
    st.binary(max_size=80).map(b64.encode),
    st.binary(max_size=80).map(lambda b: b64.encode(b) + "="),
    st.sampled_from(["target://example.com:80", "wireleap://relay:13490", "target://:1",
                     "target://[::1]:0", "https://x", "target://a..b:99999", "0.2.0",
                     "0.2", "1.0.0-rc.1", "tcp", "udp6", "CONNECT", "PING", ""]),
    st.text(max_size=60))
field_values = field_strings | json_values | st.integers(min_value=-2**70, max_value=2**70)


def valid_payload() -> dict:
    servicekey = nacl.signing.SigningKey.generate()
    contract_pk = bytes(CONTRACT_KEY.verify_key)
    digest = f"{b64.encode(contract_pk)}:{NOW + 3600}:{NOW + 7200}"
    contract = ContractData(NOW + 3600, NOW + 7200, contract_pk,
                            CONTRACT_KEY.sign(digest.encode()).signature)
    token = Sharetoken.mint(servicekey, bytes(RELAY_KEY.verify_key), contract, NOW)
    return json.loads(InitPayload("CONNECT", "tcp", Remote.parse("target://example.com:80"),
                                  token, "0.2.0").to_json())


def mutated(base: dict, paths: list[tuple[str, ...]], values: list) -> dict:
    obj = json.loads(json.dumps(base))
    for path, value in zip(paths, values, strict=False):
        holder = obj
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            if value is _DROP:
                holder.pop(path[-1], None)
            else:
                holder[path[-1]] = value
    return obj


_DROP = object()
FIELDS = [("command",), ("protocol",), ("remote",), ("version",), ("token",),
          ("token", "version"), ("token", "public_key"), ("token", "timestamp"),
          ("token", "relay_pubkey"), ("token", "share_key"), ("token", "signature"),
          ("token", "nonce"), ("token", "contract"), ("token", "contract", "settlement_open"),
          ("token", "contract", "settlement_close"), ("token", "contract", "public_key"),
          ("token", "contract", "signature"), ("extra",), ("TOKEN",), ("Remote",)]


def admit(text: str) -> None:
    """What the tunnel does with a payload before it dials; only the errors it turns
    into 4xx statuses may come out."""
    try:
        init = payload.parse(text)
        if init.command == payload.PING:
            return
        payload.check_connect(init)
        sharetoken.verify(init.token, bytes(RELAY_KEY.verify_key),
                          frozenset({bytes(CONTRACT_KEY.verify_key)}), NOW)
    except (payload.PayloadError, sharetoken.SharetokenError):
        pass


@FUZZ
@given(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4),
       st.lists(field_values | st.just(_DROP), min_size=4, max_size=4))
def test_mutated_payloads(paths, values):
    admit(json.dumps(mutated(valid_payload(), paths, values)))


@FUZZ
@given(json_values)
def test_any_json_payload(value):
    admit(json.dumps(value))


@FUZZ
@given(st.text(max_size=300) | st.binary(max_size=300).map(
    lambda b: b.decode("utf-8", "replace")))
def test_any_text_payload(text):
    admit(text)


@FUZZ
@given(st.integers(min_value=1, max_value=20_000), st.sampled_from(["[", "{\"a\":", "[{\"b\":"]))
def test_nesting_of_any_depth(depth, opener):
    admit(opener * depth)


def test_the_valid_payload_is_admitted():
    """The fuzzing starts from a payload the relay accepts (else it proves little)."""
    init = payload.parse(json.dumps(valid_payload()))
    payload.check_connect(init)
    sharetoken.verify(init.token, bytes(RELAY_KEY.verify_key),
                      frozenset({bytes(CONTRACT_KEY.verify_key)}), NOW)


CONFIG_KEYS = ["address", "contracts", "timeout", "maxtime", "bufsize", "archive_dir",
               "auto_submit_interval", "auto_upgrade", "workers", "max_connections",
               "refuse_private_addresses", "danger_zone", "network_usage", "rest_api",
               "adress", "role"]
config_objects = st.dictionaries(st.sampled_from(CONFIG_KEYS) | st.text(max_size=10),
                                 field_values, max_size=8)


def check(raw: bytes) -> None:
    try:
        config.parse(raw)
    except config.ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@FUZZ
@given(config_objects, st.dictionaries(st.sampled_from(
    ["role", "address", "key", "upgrade_channel", "network_usage_limit"]), field_values))
def test_any_config(top, contract):
    obj = dict(top)
    if isinstance(obj.get("contracts"), dict) or "contracts" not in obj:
        obj["contracts"] = {"https://contract.example": contract}
    check(json.dumps(obj).encode())


@FUZZ
@given(st.binary(max_size=200))
def test_any_config_bytes(raw):
    check(raw)
