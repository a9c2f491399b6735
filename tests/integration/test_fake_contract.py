"""The fake contract + directory (control.md §7) over real HTTP on 127.0.0.1."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import nacl.signing
import pytest
import requests

from wireleap_relay.testing.fake_contract import FakeContract
from wireleap_relay.testing.servicekey import activate_servicekey, make_pof, write_accesskey_file
from wireleap_relay.wire import b64
from wireleap_relay.wire.jsonenc import compact_bytes
from wireleap_relay.wire.sharetoken import ContractData, Sharetoken

REPO = Path(__file__).resolve().parents[2]
# Appendix A of control.md.
CONTRACT_PK = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w"
DIRECTORY_PK = "gTl3Dqh9F19Wo1Rmw0x-zMuNipG07jeiXfYPW4_Js5Q"
POF_ISSUER_PK = "bnoc3Smwt4_ROvTFWY_v9O8qlxZuPKby5Pv8zYBQW_E"
RELAY = nacl.signing.SigningKey(b"\x03" * 32)
OTHER_RELAY = nacl.signing.SigningKey(b"\x06" * 32)
RELAY_PK = b64.encode(bytes(RELAY.verify_key))
OTHER_PK = b64.encode(bytes(OTHER_RELAY.verify_key))

OK = {"code": 200, "description": "OK"}
CHALLENGE = {"code": 202, "description": "repeat request with response to challenge in headers"}


def bad_request(cause: str) -> dict:
    return {"code": 400, "description": "bad request", "cause": cause}


def upgrade(version: str) -> dict:
    return {"code": 202, "cause": version,
            "description": "please upgrade your relay to the given version as soon as possible"}


# --- fixtures and helpers ---


@pytest.fixture
def fake(make_fake) -> FakeContract:
    return make_fake()


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def call(http, method, url, obj=None, key=RELAY, headers=None) -> requests.Response:
    """A request built like the Go relay's: JSON body (`null` for GET), signed if `key`."""
    body = obj if isinstance(obj, bytes) else compact_bytes(obj)
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["Wireleap-Relay-Pubkey"] = b64.encode(bytes(key.verify_key))
        h["Wireleap-Relay-Signature"] = b64.encode(key.sign(body).signature)
    h.update(headers or {})
    return http.request(method, url, data=body, headers=h, timeout=5)


def set_clock(http, fake, offset: int) -> None:
    assert call(http, "POST", f"{fake.url}/_fake/clock", {"offset": offset}).status_code == 200


def state(http, fake) -> dict:
    return call(http, "GET", f"{fake.url}/_fake/state").json()


def entry(relay=RELAY, role="backing", software="0.6.1", **extra) -> dict:
    port = 13499 if relay is RELAY else 13500
    return {"role": role, "address": f"wireleap://127.0.0.1:{port}",
            "pubkey": b64.encode(bytes(relay.verify_key)),
            "versions": {"software": software, "client-relay": "0.2.0", "relay-relay": "0.2.0",
                         "relay-dir": "0.2.0", "relay-contract": "0.1.0"}, **extra}


def solve(challenge: str) -> str:
    return bcrypt.hashpw(challenge.encode(), bcrypt.gensalt(4, prefix=b"2a")).decode()


def enroll(http, fake, body=None, key=RELAY) -> requests.Response:
    """The relay's handshake (§3.4): pre-request, then the answer to its challenge."""
    body = body or entry(key)
    first = call(http, "POST", f"{fake.dir_url}/relays", body, key)
    assert first.status_code == 202 and first.json() == CHALLENGE
    challenge = first.headers["Wireleap-Directory-Challenge"]
    return call(http, "POST", f"{fake.dir_url}/relays", body, key, headers={
        "Wireleap-Directory-Challenge": challenge,
        "Wireleap-Directory-Response": solve(challenge)})


def mint(servicekey, contract: ContractData, relay=RELAY) -> Sharetoken:
    return Sharetoken.mint(servicekey, bytes(relay.verify_key), contract, int(time.time()))


def submit(http, fake, token: Sharetoken, key=RELAY) -> requests.Response:
    return call(http, "POST", f"{fake.url}/submit", token.to_json().encode(), key)


def settled_balance(http, fake) -> None:
    """RELAY earns 71.25 and OTHER_RELAY 23.75 from one servicekey (the §7.3.3 example)."""
    servicekey, contract = activate_servicekey(fake.url)
    tokens = [mint(servicekey, contract) for _ in range(3)] + [
        mint(servicekey, contract, OTHER_RELAY)]
    set_clock(http, fake, 30)  # the window opens 30 s after activation
    for token in tokens:
        key = RELAY if token.relay_pubkey == bytes(RELAY.verify_key) else OTHER_RELAY
        assert submit(http, fake, token, key).json() == OK
    set_clock(http, fake, 90)  # ... and closes 60 s later


# --- contract /info and generic rules ---


def test_info_and_generic_rules(http, fake):
    r = call(http, "GET", f"{fake.url}//info", key=None)
    assert r.status_code == 200
    assert r.headers["Wireleap-Relay-Contract-Version"] == "0.1.0"
    assert r.headers["Wireleap-Client-Contract-Version"] == "0.1.0"
    assert r.json() == {
        "pubkey": CONTRACT_PK, "version": "0.3.5", "endpoint": fake.url,
        "proof_of_funding": [{"type": "basic", "pubkey": POF_ISSUER_PK}],
        "servicekey": {"currency": "usd", "value": "100", "duration": "30s"},
        "settlement": {"fee_percent": "5", "submission_window": "1m0s"},
        "payout": {"endpoint": f"{fake.url}/ps", "type": "dummy", "min_withdrawal": 1,
                   "max_withdrawal": 100000, "info": f"{fake.url}/payout-info"},
        "directory": {"endpoint": f"{fake.url}/dir", "public_key": DIRECTORY_PK},
        "metadata": {"operator": "Fake Inc.", "name": "Fake Contract"},
    }
    assert b64.decode(CONTRACT_PK) == fake.contract_pubkey

    missing = call(http, "GET", f"{fake.url}/nope")
    assert (missing.status_code, missing.json()) == (
        404, {"code": 404, "description": "resource not found"})
    wrong = call(http, "PUT", f"{fake.url}/info")
    assert wrong.status_code == 405
    assert wrong.json()["cause"] == (
        "request uses unsupported HTTP method 'PUT', supported methods are: [GET]")
    old = call(http, "GET", f"{fake.url}/info",
               headers={"Wireleap-Relay-Contract-Version": "0.2.0"})
    assert (old.status_code, old.json()) == (
        400, bad_request("invalid client API version: expecting version 0.1.x, got 0.2.0"))


def test_payout_reads_need_relay_auth(http, fake):
    r = call(http, "GET", f"{fake.url}/payout/balance", key=None)
    assert (r.status_code, r.json()["cause"]) == (403, "auth headers for Relay missing")
    forged = call(http, "GET", f"{fake.url}/payout/balance", key=None, headers={
        "Wireleap-Relay-Pubkey": RELAY_PK,
        "Wireleap-Relay-Signature": b64.encode(OTHER_RELAY.sign(b"null").signature)})
    assert (forged.status_code, forged.json()["cause"]) == (
        403, "auth signature for Relay does not verify")


# --- servicekey activation ---


def test_pof_matches_the_go_vector():
    pof = make_pof(1700086400, "0123456789abcdef01")
    assert pof == {"type": "basic", "expiration": 1700086400, "nonce": "0123456789abcdef01",
                   "signature": "uEQ265aKiYiyn6vYGzOHlK7EjVin0iq5TOZm0GhQ8spvKTTrdWAIp5Uw2fGlE-"
                                "MfkWXFO71yqVgZJYvNAWX7Aw"}
    assert re.fullmatch(r"[0-9a-f]{18}", make_pof()["nonce"])


def test_accesskey_file(tmp_path, fake):
    path = tmp_path / "accesskeys.json"
    write_accesskey_file(path, fake.url, fake.contract_pubkey, 3)
    doc = json.loads(path.read_text())
    assert doc["version"] == "0.1.0"
    assert doc["contract"] == {"endpoint": fake.url, "public_key": CONTRACT_PK}
    assert len({pof["nonce"] for pof in doc["pofs"]}) == 3


def test_activation_ok(fake):
    servicekey, contract = activate_servicekey(fake.url)
    assert contract.public_key == fake.contract_pubkey
    assert contract.settlement_open - fake.now() in (29, 30)
    assert contract.settlement_close == contract.settlement_open + 60
    nacl.signing.VerifyKey(fake.contract_pubkey).verify(contract.digest().encode(),
                                                        contract.signature)
    activated = fake.snapshot()["activated"]
    assert activated == {b64.encode(bytes(servicekey.verify_key)): {
        "open": contract.settlement_open, "close": contract.settlement_close,
        "settled": False}}


@pytest.mark.parametrize("pof, cause", [
    ({**make_pof(), "nonce": "ffffffffffffffffff"}, "invalid signature"),
    ({**make_pof(), "type": "stripe"}, "invalid signature"),
    (make_pof(expiration=int(time.time()) - 1), "expired proof of funding"),
])
def test_activation_refuses_bad_pofs(fake, pof, cause):
    with pytest.raises(requests.HTTPError) as err:
        activate_servicekey(fake.url, pof)
    assert (err.value.response.status_code, err.value.response.json()) == (
        400, bad_request(cause))


def test_activation_refuses_reused_pof_and_bad_pubkey(http, fake):
    pof = make_pof()
    activate_servicekey(fake.url, pof)
    with pytest.raises(requests.HTTPError) as err:
        activate_servicekey(fake.url, pof)
    assert err.value.response.json() == bad_request("this pof has been seen/used already")
    r = call(http, "POST", f"{fake.url}/servicekey/activate",
             {"pubkey": "AAAA", "pof": make_pof()}, key=None)
    assert r.json() == bad_request("servicekey public key is missing or invalid")


def test_pof_expiry_follows_the_fake_clock(http, fake):
    set_clock(http, fake, 3600)
    with pytest.raises(requests.HTTPError) as err:
        activate_servicekey(fake.url, make_pof(expiration=int(time.time()) + 60))
    assert err.value.response.json() == bad_request("expired proof of funding")


# --- sharetoken submission ---


def test_submission_ok_duplicate_and_counters(http, fake):
    servicekey, contract = activate_servicekey(fake.url)
    token = mint(servicekey, contract)
    early = submit(http, fake, token)
    assert early.json() == bad_request("settlement window not yet open")
    set_clock(http, fake, 30)
    ok = submit(http, fake, token)
    assert (ok.status_code, ok.json()) == (200, OK)
    again = submit(http, fake, token)
    assert (again.status_code, again.json()) == (409, {
        "code": 409, "description": "action conflicts with existing resource",
        "cause": "duplicate sharetoken"})
    s = state(http, fake)
    assert s["submit_requests"] == 3
    assert s["submissions"] == {token.signature_b64: 3}
    assert list(s["tokens"]) == [token.signature_b64]
    assert s["tokens"][token.signature_b64]["body"] == token.to_json()


def test_submission_after_the_window(http, fake):
    servicekey, contract = activate_servicekey(fake.url)
    set_clock(http, fake, 90)
    r = submit(http, fake, mint(servicekey, contract))
    assert (r.status_code, r.json()) == (400, bad_request("settlement window already closed"))


def test_submission_checks(http, fake):
    servicekey, contract = activate_servicekey(fake.url)
    set_clock(http, fake, 30)
    foreign = ContractData.sign(nacl.signing.SigningKey(b"\x09" * 32),
                                contract.settlement_open, contract.settlement_close)
    token = mint(servicekey, contract)
    forged = Sharetoken(**{**token.__dict__,
                           "signature": OTHER_RELAY.sign(token.digest().encode()).signature})
    # Properly signed by the contract key, but for a servicekey it never activated.
    unknown = mint(nacl.signing.SigningKey.generate(), contract)
    cases = [
        (submit(http, fake, mint(servicekey, foreign)), "contract public key mismatch"),
        (submit(http, fake, forged), "invalid signature"),
        (submit(http, fake, unknown), "sharetoken submission rejected"),
        (submit(http, fake, mint(servicekey, contract, OTHER_RELAY)),
         "sharetoken submission rejected"),
        (call(http, "POST", f"{fake.url}/submit", b'{"version":0}'),
         "token.contract is missing"),
    ]
    for response, cause in cases:
        assert (response.status_code, response.json()) == (400, bad_request(cause))
    unsigned = call(http, "POST", f"{fake.url}/submit", token.to_json().encode(), key=None)
    assert (unsigned.status_code, unsigned.json()["cause"]) == (
        403, "auth headers for Relay missing")
    assert state(http, fake)["tokens"] == {}


# --- settlement, balance, withdrawals ---


def test_settlement_worked_example(http, fake):
    settled_balance(http, fake)
    set_clock(http, fake, 30)
    assert call(http, "GET", f"{fake.url}/payout/tokens").json() == {RELAY_PK: 3}
    assert call(http, "GET", f"{fake.url}/payout/balance").json() == {
        "currency": "usd", "available": 0}
    set_clock(http, fake, 90)
    assert call(http, "GET", f"{fake.url}/payout/tokens").json() == {}
    assert call(http, "GET", f"{fake.url}/payout/balance").json() == {
        "currency": "usd", "available": 71}
    assert call(http, "GET", f"{fake.url}/payout/balance", key=OTHER_RELAY).json() == {
        "currency": "usd", "available": 23}
    balances = state(http, fake)["balances"]
    assert balances[RELAY_PK]["value"] == "285/4"
    assert balances[OTHER_PK]["value"] == "95/4"


@pytest.mark.parametrize("request_body, cause", [
    ({"amount": 0, "type": "TODO", "destination": "acct"}, "withdrawal amount is invalid (<= 0)"),
    ({"amount": -5, "type": "TODO", "destination": "acct"},
     "withdrawal amount is invalid (<= 0)"),
    ({"amount": 5, "destination": "acct"}, "withdrawal request type is missing"),
    ({"amount": 5, "type": "TODO"}, "withdrawal destination is missing"),
    ({"amount": 100001, "type": "TODO", "destination": "acct"},
     "withdrawal amount out of bounds"),
])
def test_withdrawal_request_checks(http, fake, request_body, cause):
    r = call(http, "POST", f"{fake.url}/payout/withdrawals", request_body)
    assert (r.status_code, r.json()) == (400, bad_request(cause))


def test_withdrawal_lifecycle(http, make_fake):
    fake = make_fake(withdrawal_delay=10)
    settled_balance(http, fake)
    url = f"{fake.url}/payout/withdrawals"
    assert call(http, "GET", url).json() is None
    wd = {"amount": 50, "type": "TODO", "destination": "acct_1"}

    too_much = call(http, "POST", url, {**wd, "amount": 72})
    assert (too_much.status_code, too_much.json()) == (403, {
        "code": 403, "description": "action not allowed",
        "cause": "insufficient balance to complete request"})

    call(http, "POST", f"{fake.url}/_fake/payments", {"unreachable": True})
    down = call(http, "POST", url, wd)
    assert (down.status_code, down.json()) == (502, {
        "code": 502, "description": "gateway is unreachable or down",
        "cause": "payment system is unreachable or down, please try again later"})
    assert state(http, fake)["withdrawals"] == {}
    call(http, "POST", f"{fake.url}/_fake/payments", {"unreachable": False})

    created = call(http, "POST", url, wd)
    assert created.status_code == 200
    pending = created.json()
    assert re.fullmatch(r"wd_[0-9a-f]{16}", pending.pop("id"))
    assert pending == {"state": "pending", "state_changed": fake.now(), **wd}
    second = call(http, "POST", url, {**wd, "amount": 1})
    assert (second.status_code, second.json()["cause"]) == (409, "a withdrawal is already pending")
    assert call(http, "GET", f"{fake.url}/payout/balance").json() == {
        "currency": "usd", "available": 71, "pending": -50}

    set_clock(http, fake, 100)
    done = call(http, "GET", url).json()
    assert (done["state"], done["receipt"], done["state_changed"]) == (
        "complete", {"fake": True}, fake.now())
    assert call(http, "GET", f"{fake.url}/payout/balance").json() == {
        "currency": "usd", "available": 21}


def test_failed_withdrawal_keeps_the_balance(http, fake):
    settled_balance(http, fake)
    call(http, "POST", f"{fake.url}/_fake/withdrawal", {"outcome": "failed"})
    created = call(http, "POST", f"{fake.url}/payout/withdrawals",
                   {"amount": 70, "type": "TODO", "destination": "acct_1"})
    assert created.status_code == 200
    assert call(http, "GET", f"{fake.url}/payout/withdrawals").json()["state"] == "failed"
    assert call(http, "GET", f"{fake.url}/payout/balance").json() == {
        "currency": "usd", "available": 71}


# --- directory ---


def test_enrollment_with_challenge(http, fake):
    first = call(http, "POST", f"{fake.dir_url}/relays", entry())
    assert (first.status_code, first.json()) == (202, CHALLENGE)
    assert first.headers["Wireleap-Relay-Dir-Version"] == "0.2.0"
    challenge = first.headers["Wireleap-Directory-Challenge"]
    assert re.fullmatch(r"4~[0-9a-f]{32}", challenge)

    wrong = call(http, "POST", f"{fake.dir_url}/relays", entry(), headers={
        "Wireleap-Directory-Challenge": challenge,
        "Wireleap-Directory-Response": solve("4~something else")})
    assert (wrong.status_code, wrong.json()) == (202, CHALLENGE)
    made_up = call(http, "POST", f"{fake.dir_url}/relays", entry(), headers={
        "Wireleap-Directory-Challenge": "4~abc", "Wireleap-Directory-Response": solve("4~abc")})
    assert made_up.status_code == 202

    answer = {"Wireleap-Directory-Challenge": challenge,
              "Wireleap-Directory-Response": solve(challenge)}
    done = call(http, "POST", f"{fake.dir_url}/relays", entry(), headers=answer)
    assert (done.status_code, done.json()) == (200, OK)
    # A challenge is good for one enrollment only.
    reused = call(http, "POST", f"{fake.dir_url}/relays", entry(OTHER_RELAY), OTHER_RELAY,
                  headers=answer)
    assert reused.status_code == 202

    info = call(http, "GET", f"{fake.dir_url}/info", key=None).json()
    assert info == {
        "public_key": DIRECTORY_PK, "version": "0.3.0", "endpoint": fake.dir_url,
        "enrollment": {"fronting": {"count": 0, "restricted": False},
                       "entropic": {"count": 0, "restricted": False},
                       "backing": {"count": 1, "restricted": False}},
        "upgrade_channels": {"relay": {"default": "0.6.1"}},
    }


def test_enrollment_without_challenge(http, make_fake):
    fake = make_fake(challenge=False)
    r = call(http, "POST", f"{fake.dir_url}/relays", entry())
    assert (r.status_code, r.json()) == (200, OK)
    assert RELAY_PK in fake.snapshot()["relays"]


def test_enrollment_keys(http, make_fake):
    fake = make_fake(enrollment_keys={"backing": ["backing:secretkey"]})
    info = call(http, "GET", f"{fake.dir_url}/info", key=None).json()
    assert info["enrollment"]["backing"]["restricted"] is True
    assert info["enrollment"]["fronting"]["restricted"] is False
    for body in (entry(), entry(key="backing:wrong")):
        r = call(http, "POST", f"{fake.dir_url}/relays", body)
        assert (r.status_code, r.json()) == (400, bad_request("enrollment key is incorrect"))
    assert enroll(http, fake, entry(key="backing:secretkey")).json() == OK
    assert enroll(http, fake, entry(OTHER_RELAY, role="fronting"), OTHER_RELAY).json() == OK


@pytest.mark.parametrize("body, cause", [
    (entry(role="exit"), "invalid relay role 'exit'"),
    (entry(address="tcp://127.0.0.1:1"), "invalid relay address 'tcp://127.0.0.1:1'"),
    (entry(pubkey=OTHER_PK), "relay entry pubkey does not match the signing pubkey"),
])
def test_enrollment_validation(http, fake, body, cause):
    r = call(http, "POST", f"{fake.dir_url}/relays", body)
    assert (r.status_code, r.json()) == (400, bad_request(cause))


def test_heartbeat_and_upgrade_notice(http, fake):
    assert enroll(http, fake).json() == OK
    beat = call(http, "POST", f"{fake.dir_url}/relays", entry())
    assert (beat.status_code, beat.json()) == (200, OK)

    call(http, "POST", f"{fake.url}/_fake/upgrade", {"relay": "0.6.2"})
    notice = call(http, "POST", f"{fake.dir_url}/relays", entry())
    assert (notice.status_code, notice.json()) == (202, upgrade("0.6.2"))
    current = call(http, "POST", f"{fake.dir_url}/relays", entry(software="0.6.2"))
    assert current.json() == OK
    other_channel = call(http, "POST", f"{fake.dir_url}/relays", entry(upgrade_channel="beta"))
    assert other_channel.json() == OK

    call(http, "POST", f"{fake.url}/_fake/upgrade", {"relay": "0.6.2", "force": True})
    forced = call(http, "POST", f"{fake.dir_url}/relays", entry(software="0.7.0"))
    assert forced.json() == upgrade("0.6.2")
    dirinfo = call(http, "GET", f"{fake.dir_url}/info", key=None).json()
    assert dirinfo["upgrade_channels"] == {"relay": {"default": "0.6.2"}}


def test_disenroll_and_expiry(http, make_fake):
    fake = make_fake(relay_ttl=600)
    assert enroll(http, fake).json() == OK
    gone = call(http, "DELETE", f"{fake.dir_url}/relays", entry())
    assert (gone.status_code, gone.json()) == (200, OK)
    assert call(http, "GET", f"{fake.dir_url}/relays", key=None).json() == {}
    # Unknown again: the next heartbeat gets a challenge and re-enrolls.
    assert enroll(http, fake).json() == OK
    assert call(http, "POST", f"{fake.url}/_fake/expire_relays").json() == {"expired": 1}
    assert call(http, "GET", f"{fake.dir_url}/info", key=None).json()["enrollment"][
        "backing"]["count"] == 0

    assert enroll(http, fake).json() == OK
    set_clock(http, fake, 599)
    assert call(http, "POST", f"{fake.dir_url}/relays", entry()).json() == OK
    set_clock(http, fake, 599 + 601)  # the heartbeat above refreshed the TTL
    assert call(http, "GET", f"{fake.dir_url}/relays", key=None).json() == {}
    assert call(http, "POST", f"{fake.dir_url}/relays", entry()).json() == CHALLENGE


def test_signed_relay_list(http, fake):
    assert enroll(http, fake, entry(key="backing:secretkey")).json() == OK
    assert enroll(http, fake, entry(OTHER_RELAY, role="fronting"), OTHER_RELAY).json() == OK
    r = call(http, "GET", f"{fake.dir_url}/relays", key=None)
    assert r.headers["Wireleap-Directory-Pubkey"] == DIRECTORY_PK
    signature = b64.decode(r.headers["Wireleap-Directory-Signature"])
    nacl.signing.VerifyKey(b64.decode(DIRECTORY_PK)).verify(r.content, signature)
    backing = entry()
    assert r.json() == {
        backing["address"]: backing,  # "key" is not published
        entry(OTHER_RELAY)["address"]: entry(OTHER_RELAY, role="fronting"),
    }


# --- persistence and the command line ---


def test_state_survives_a_restart(http, make_fake, tmp_path):
    fake = make_fake(tmp_path / "kept", challenge=False)
    call(http, "POST", f"{fake.dir_url}/relays", entry())
    pof = make_pof()
    servicekey, contract = activate_servicekey(fake.url, pof)
    set_clock(http, fake, 30)
    token = mint(servicekey, contract)
    assert submit(http, fake, token).json() == OK
    before = state(http, fake)
    fake.stop()

    again = make_fake(tmp_path / "kept", challenge=False)
    after = state(http, again)
    before.pop("now"), after.pop("now")
    assert after == before
    assert RELAY_PK in call(http, "GET", f"{again.dir_url}/relays", key=None).text
    assert submit(http, again, token).status_code == 409
    assert call(http, "POST", f"{again.dir_url}/relays", entry()).json() == OK  # a heartbeat
    with pytest.raises(requests.HTTPError) as err:
        activate_servicekey(again.url, pof)
    assert err.value.response.json()["cause"] == "this pof has been seen/used already"


def test_command_line(tmp_path, http):
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wireleap_relay.testing.fake_contract", "--state-dir",
         str(tmp_path / "state"), "--ready-file", str(ready), "--quiet", "--no-challenge",
         "--servicekey-duration", "45", "--enrollment-key", "backing=backing:secretkey"],
        stdout=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        url = ready.read_text()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert proc.stdout.readline() == f"fake contract listening on {url}\n"
        info = call(http, "GET", f"{url}/info", key=None).json()
        assert (info["pubkey"], info["servicekey"]["duration"]) == (CONTRACT_PK, "45s")
        r = call(http, "POST", f"{url}/dir/relays", entry(key="backing:secretkey"))
        assert r.json() == OK
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert RELAY_PK in (tmp_path / "state" / "fake-state.json").read_text()
