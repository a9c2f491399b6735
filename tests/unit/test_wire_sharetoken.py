"""Sharetokens against the wire.md §8 vectors, and the relay's checks in Go's order with
Go's texts (§4.5)."""

import dataclasses
import json
import os
import re

import nacl.signing
import pytest

from wireleap_relay.wire import b64
from wireleap_relay.wire.gojson import FieldError
from wireleap_relay.wire.sharetoken import (
    ContractData,
    Sharetoken,
    SharetokenError,
    verify,
)

with open(os.path.join(os.path.dirname(__file__), os.pardir, "data",
                       "sharetoken_vectors.json")) as _f:
    V = json.load(_f)

INPUTS = V["inputs"]
CONTRACT_KEY = nacl.signing.SigningKey(bytes.fromhex(INPUTS["contract_seed_hex"]))
SERVICEKEY = nacl.signing.SigningKey(bytes.fromhex(INPUTS["servicekey_seed_hex"]))
RELAY_KEY = nacl.signing.SigningKey(bytes.fromhex(INPUTS["relay_seed_hex"]))
CONTRACT_PK = bytes(CONTRACT_KEY.verify_key)
RELAY_PK = bytes(RELAY_KEY.verify_key)
OPEN, CLOSE = INPUTS["settlement_open"], INPUTS["settlement_close"]
TS, NONCE = INPUTS["timestamp"], INPUTS["nonce"]
NOW = TS  # before settlement_open: the token is valid


def contract(open_=OPEN, close=CLOSE):
    return ContractData.sign(CONTRACT_KEY, open_, close)


def token(**changes):
    c = changes.pop("contract", None) or contract()
    minted = Sharetoken.mint(SERVICEKEY, changes.pop("relay_pubkey", RELAY_PK), c,
                             changes.pop("timestamp", TS), changes.pop("nonce", NONCE))
    return dataclasses.replace(minted, **changes) if changes else minted


def check(tok, own=RELAY_PK, trusted=frozenset({CONTRACT_PK}), now=NOW):
    with pytest.raises(SharetokenError) as info:
        verify(tok, own, set(trusted), now)
    return str(info.value)


# --- vectors -------------------------------------------------------------------------------

def test_vector_keys():
    keys = V["keys"]
    assert b64.encode(CONTRACT_PK) == keys["contract_public_key"]
    assert CONTRACT_PK.hex() == keys["contract_public_key_hex"]
    assert b64.encode(bytes(SERVICEKEY.verify_key)) == keys["servicekey_public_key"]
    assert b64.encode(RELAY_PK) == keys["relay_public_key"]


def test_contract_vector():
    c = contract()
    assert c.digest() == V["contract"]["digest"]
    assert b64.encode(c.signature) == V["contract"]["signature"]
    assert c.signature.hex() == V["contract"]["signature_hex"]
    assert json.dumps(c.to_dict(), separators=(",", ":")) == V["contract"]["json"]
    assert ContractData.from_dict(json.loads(V["contract"]["json"])) == c


def test_contract_in_servicekey_json():
    sk = json.loads(V["servicekey_json"])
    assert ContractData.from_dict(sk["contract"]) == contract()


def test_sharetoken_vector():
    tok = token()
    assert tok.digest() == V["sharetoken"]["digest"]
    assert "::" + NONCE in tok.digest()  # empty share_key
    assert b64.encode(tok.signature) == V["sharetoken"]["signature"]
    assert tok.signature.hex() == V["sharetoken"]["signature_hex"]
    assert tok.to_json() == V["sharetoken"]["json"]
    assert len(tok.to_json()) == 547
    assert tok.signature_b64 == V["sharetoken"]["signature"]
    assert tok.contract_key_b64 == V["keys"]["contract_public_key"]


def test_sharetoken_parse_round_trip():
    parsed = Sharetoken.from_dict(json.loads(V["sharetoken"]["json"]))
    assert parsed == token()
    assert parsed.to_json() == V["sharetoken"]["json"]
    assert (parsed.version, parsed.share_key, parsed.nonce) == (0, "", NONCE)


def test_mint_defaults():
    first = Sharetoken.mint(SERVICEKEY, RELAY_PK, contract(), TS)
    second = Sharetoken.mint(SERVICEKEY, RELAY_PK, contract(), TS)
    assert re.fullmatch(r"[0-9a-f]{32}", first.nonce)
    assert first.nonce != second.nonce
    assert first.signature != second.signature
    assert (first.version, first.share_key) == (0, "")
    assert first.public_key == bytes(SERVICEKEY.verify_key)
    verify(first, RELAY_PK, {CONTRACT_PK}, NOW)
    assert Sharetoken.from_dict(json.loads(first.to_json())) == first


# --- contract sub-object -------------------------------------------------------------------

def test_contract_omitempty():
    assert ContractData(0, 0, b"", b"").to_dict() == {}
    assert ContractData(5, 0, CONTRACT_PK, b"").to_dict() == \
        {"settlement_open": 5, "public_key": b64.encode(CONTRACT_PK)}


def test_contract_missing_fields_are_zero():
    c = ContractData.from_dict({})
    assert c == ContractData(0, 0, b"", b"")
    assert c.digest() == ":0:0"


def test_contract_digest_negative_numbers():
    assert ContractData(-1, -2, CONTRACT_PK, b"").digest() == \
        f"{b64.encode(CONTRACT_PK)}:-1:-2"


# --- verify, in Go's order -----------------------------------------------------------------

def test_verify_success():
    assert verify(token(), RELAY_PK, {CONTRACT_PK}, NOW) is None
    assert verify(token(), RELAY_PK, {CONTRACT_PK}, OPEN - 1) is None


def test_relay_pubkey_mismatch_comes_first():
    other = bytes(nacl.signing.SigningKey(bytes(32)).verify_key)
    tok = dataclasses.replace(token(), nonce="X" * 32)  # also a bad client signature
    assert check(tok, own=other, trusted=set(), now=OPEN + 10) == (
        "sharetoken relay public key mismatch: expecting "
        f"{b64.encode(other)}, got {V['keys']['relay_public_key']}")


def test_token_for_another_relay():
    other = bytes(nacl.signing.SigningKey(bytes(32)).verify_key)
    assert check(token(relay_pubkey=other)) == (
        f"sharetoken relay public key mismatch: expecting {V['keys']['relay_public_key']}, "
        f"got {b64.encode(other)}")


@pytest.mark.parametrize("now", [OPEN, OPEN + 1, CLOSE + 1])
def test_expired(now):
    assert check(token(), now=now) == "sharetoken is expired"


def test_expired_before_untrusted():
    assert check(token(), trusted=set(), now=OPEN) == "sharetoken is expired"


def test_untrusted_contract():
    assert check(token(), trusted={RELAY_PK}) == \
        "this sharetoken was not signed by a trusted service contract"


def test_untrusted_before_client_signature():
    tok = dataclasses.replace(token(), nonce="f" + NONCE[1:])
    assert check(tok, trusted=set()) == \
        "this sharetoken was not signed by a trusted service contract"


def test_flipped_nonce_char():
    tok = dataclasses.replace(token(), nonce="f" + NONCE[1:])
    assert check(tok) == "sharetoken client signature is invalid"


@pytest.mark.parametrize("field,value", [
    ("timestamp", TS + 1),
    ("version", 1),
    ("share_key", "x"),
    ("signature", b"\x00" * 64),
    ("signature", b"\x00" * 10),     # wrong length: fails, never crashes
    ("signature", b""),
    ("public_key", bytes(RELAY_KEY.verify_key)),  # someone else's servicekey
])
def test_client_signature_invalid(field, value):
    tok = dataclasses.replace(token(), **{field: value})
    assert check(tok) == "sharetoken client signature is invalid"


def test_contract_public_key_null():
    c = ContractData(OPEN, CLOSE, b"", contract().signature)
    assert check(token(contract=c), trusted={b""}) == "contract public key is null"


def test_contract_signature_invalid():
    sig = contract().signature
    forged = ContractData(OPEN, CLOSE + 1, CONTRACT_PK, sig)  # not re-signed by the contract
    tok = token(contract=forged)  # but re-signed by the servicekey
    assert check(tok) == (
        "error while verifying sharetoken contract data: contract data "
        f"`{V['keys']['contract_public_key']}:{OPEN}:{CLOSE + 1}` are not signed by "
        f"signature `{V['contract']['signature']}`")


def test_a_verified_contract_part_vouches_only_for_its_own_signature():
    """The contract's part is verified once per service key and remembered: a token whose
    contract part differs in its signature alone is verified afresh, and refused."""
    good = contract()
    verify(token(contract=good), RELAY_PK, {CONTRACT_PK}, NOW)
    other = nacl.signing.SigningKey(b"\xee" * 32).sign(good.digest().encode()).signature
    forged = dataclasses.replace(good, signature=other)
    assert check(token(contract=forged)).endswith(f"are not signed by signature "
                                                  f"`{b64.encode(other)}`")
    verify(token(contract=good), RELAY_PK, {CONTRACT_PK}, NOW)


def test_contract_signature_wrong_length():
    forged = ContractData(OPEN, CLOSE, CONTRACT_PK, b"\x01\x02")
    assert check(token(contract=forged)) == (
        "error while verifying sharetoken contract data: contract data "
        f"`{V['contract']['digest']}` are not signed by signature `AQI`")


# --- parsing -------------------------------------------------------------------------------

def vector_dict():
    return json.loads(V["sharetoken"]["json"])


def parse_error(obj):
    with pytest.raises(FieldError) as info:
        Sharetoken.from_dict(obj)
    return str(info.value)


def test_parse_case_insensitive_unknown_and_null():
    obj = vector_dict()
    obj["PUBLIC_KEY"] = obj.pop("public_key")
    obj["Nonce"] = obj.pop("nonce")
    obj["extra"] = {"anything": [1, 2]}
    obj["share_key"] = None
    assert Sharetoken.from_dict(obj) == token()


def test_parse_exact_key_wins_over_folded():
    obj = vector_dict()
    obj["NONCE"] = "other"
    assert Sharetoken.from_dict(obj).nonce == NONCE


@pytest.mark.parametrize("mutate,message", [
    (lambda o: o.pop("contract"), "token.contract is missing"),
    (lambda o: o.update(contract=None), "token.contract is missing"),
    (lambda o: o.update(contract=[]), "token.contract: expected a JSON object, got an array"),
    (lambda o: o.update(public_key=b64.encode(bytes(16))),
     "token.public_key: an ed25519 public key is 32 bytes, got 16"),
    (lambda o: o.pop("public_key"), "token.public_key: an ed25519 public key is 32 bytes, got 0"),
    (lambda o: o.update(relay_pubkey=b64.encode(bytes(33))),
     "token.relay_pubkey: an ed25519 public key is 32 bytes, got 33"),
    (lambda o: o["contract"].update(public_key=b64.encode(bytes(16))),
     "token.contract.public_key: an ed25519 public key is 32 bytes, got 16"),
    (lambda o: o.update(public_key=o["public_key"] + "="),
     "token.public_key: illegal base64 data at input byte 43"),
    (lambda o: o.update(signature=o["signature"].replace("-", "+")),
     "token.signature: illegal base64 data at input byte 45"),
    (lambda o: o.update(version="0"), "token.version: expected an integer, got a string"),
    (lambda o: o.update(timestamp=1.5), "token.timestamp: expected an integer, got a number"),
    (lambda o: o.update(timestamp=True), "token.timestamp: expected an integer, got a boolean"),
    (lambda o: o.update(timestamp=2**63),
     f"token.timestamp: {2**63} does not fit a 64-bit integer"),
    (lambda o: o.update(nonce=5), "token.nonce: expected a string, got a number"),
    (lambda o: o.update(share_key={}), "token.share_key: expected a string, got an object"),
    (lambda o: o["contract"].update(settlement_open="1"),
     "token.contract.settlement_open: expected an integer, got a string"),
    (lambda o: o["contract"].update(signature=7),
     "token.contract.signature: expected a string, got a number"),
])
def test_parse_errors(mutate, message):
    obj = vector_dict()
    mutate(obj)
    assert parse_error(obj) == message


def test_parse_not_an_object():
    assert parse_error("token") == "token: expected a JSON object, got a string"
    assert parse_error(None) == "token: expected a JSON object, got null"


def test_parse_contract_without_public_key_is_allowed():
    obj = vector_dict()
    del obj["contract"]["public_key"]
    assert Sharetoken.from_dict(obj).contract.public_key == b""
