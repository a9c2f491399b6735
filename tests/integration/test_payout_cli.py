"""`balance` and `withdraw` as the operator runs them: the real CLI as a subprocess against
the fake contract in this process (control.md §5, operations.md §3.11, §3.12)."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from wireleap_relay import identity
from wireleap_relay.contract.client import RETRY_PAUSE_ENV, SignedClient
from wireleap_relay.home import HOME_ENV, Home
from wireleap_relay.identity import Identity
from wireleap_relay.testing.fake_contract import FakeContract, Request
from wireleap_relay.testing.fake_state import FakeError
from wireleap_relay.testing.relayproc import free_port
from wireleap_relay.testing.servicekey import activate_servicekey
from wireleap_relay.wire.jsonenc import compact
from wireleap_relay.wire.sharetoken import Sharetoken

ROOT = str(Path(__file__).resolve().parents[2])
LOG_PREFIX = re.compile(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} ")
NO_CONTRACT = "no contract specified, listing balance for all contracts..."
EARNED = 95  # one servicekey of value 100, 5% fee, every token submitted by our relay
PENDING_409 = ('{"code":409,"description":"action conflicts with existing resource",'
               '"cause":"a withdrawal is already pending"}')
TOO_LARGE_403 = ('{"code":403,"description":"action not allowed",'
                 '"cause":"insufficient balance to complete request"}')
UNREACHABLE_502 = ('{"code":502,"description":"gateway is unreachable or down","cause":'
                   '"payment system is unreachable or down, please try again later"}')


# --- fixtures and helpers ------------------------------------------------------------------

@pytest.fixture
def fake(make_fake):
    return make_fake()


class Relay:
    """A relay home (identity and config.json) and its CLI."""

    def __init__(self, root: Path, *contract_urls: str):
        self.root = root
        self.identity: Identity = identity.create(Home(str(root)), lambda message: None)
        entry = {"role": "fronting", "address": "wireleap://127.0.0.1:13490"}
        config = {"address": "127.0.0.1:13490", "contracts": {u: entry for u in contract_urls}}
        (root / "config.json").write_text(json.dumps(config, indent=4))

    @property
    def pubkey(self) -> str:
        return self.identity.public_key_b64

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=ROOT, **{HOME_ENV: str(self.root),
                                                    RETRY_PAUSE_ENV: "0.05"})
        return subprocess.run([sys.executable, "-m", "wireleap_relay", *args], env=env,
                              cwd=str(self.root), capture_output=True, text=True, timeout=30)


@pytest.fixture
def relay(tmp_path, fake):
    return Relay(tmp_path, fake.url)


def logged(result: subprocess.CompletedProcess) -> list[str]:
    """The stderr lines without their Go log prefix, which every line must have."""
    lines = result.stderr.splitlines()
    for line in lines:
        assert LOG_PREFIX.match(line), line
    return [LOG_PREFIX.sub("", line, count=1) for line in lines]


def assert_fatal(result: subprocess.CompletedProcess, *messages: str) -> None:
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert logged(result) == list(messages)


def set_clock(fake: FakeContract, now: int) -> None:
    requests.post(f"{fake.url}/_fake/clock", json={"offset": now - int(time.time())},
                  timeout=5).raise_for_status()


def earn(fake: FakeContract, relay: Relay, tokens: int = 3, settle: bool = True) -> None:
    """Sharetokens of one servicekey submitted as the relay inside their window; with
    `settle`, the clock then moves past the window so the contract pays out EARNED."""
    servicekey, contract = activate_servicekey(fake.url)
    minted = [Sharetoken.mint(servicekey, relay.identity.public_key, contract, fake.now())
              for _ in range(tokens)]
    set_clock(fake, contract.settlement_open)
    submitter = SignedClient(relay.identity)
    for token in minted:
        submitter.perform("POST", f"{fake.url}/submit", token.to_dict())
    if settle:
        set_clock(fake, contract.settlement_close)


def record_requests(fake: FakeContract) -> list[Request]:
    seen: list[Request] = []
    handle = fake.app.handle

    def recording(request: Request):
        seen.append(request)
        return handle(request)

    fake.app.handle = recording  # the server looks the handler up on each request
    return seen


def balance_text(url: str, balance: str, tokens: str, withdrawal: str) -> str:
    return (f'{{\n    "contract": "{url}",\n    "balance": {balance},\n'
            f'    "tokens": {tokens},\n    "withdrawal": {withdrawal}\n}}\n')


# --- balance -------------------------------------------------------------------------------

def test_balance_of_a_new_relay(fake, relay):
    seen = record_requests(fake)
    result = relay.cli("balance")
    assert result.returncode == 0, result.stderr
    assert logged(result) == [NO_CONTRACT]
    assert result.stdout == balance_text(
        fake.url, '{\n        "currency": "usd",\n        "available": 0\n    }', "{}", "null")
    assert [(r.method, r.path) for r in seen] == [
        ("GET", "/payout/balance"), ("GET", "/payout/tokens"), ("GET", "/payout/withdrawals")]
    for request in seen:  # control.md §1.4 R7: signed, relay-contract only, no key
        assert request.body == b"null"
        assert request.headers["Wireleap-Relay-Contract-Version"] == "0.1.0"
        assert request.headers["Wireleap-Relay-Pubkey"] == relay.pubkey
        for absent in ("Wireleap-Relay-Dir-Version", "Idempotency-Key"):
            assert absent not in request.headers


def test_balance_tokens_then_earned(fake, relay):
    earn(fake, relay, tokens=3, settle=False)
    inside = relay.cli("balance", "--contract", fake.url)
    assert (inside.returncode, inside.stderr) == (0, "")  # no "no contract" line
    assert inside.stdout == balance_text(
        fake.url, '{\n        "currency": "usd",\n        "available": 0\n    }',
        f'{{\n        "{relay.pubkey}": 3\n    }}', "null")

    set_clock(fake, fake.now() + 3600)
    settled = relay.cli("balance", f"--contract={fake.url}")
    assert settled.returncode == 0, settled.stderr
    assert json.loads(settled.stdout) == {
        "contract": fake.url, "balance": {"currency": "usd", "available": EARNED},
        "tokens": {}, "withdrawal": None}


def test_balance_of_every_contract(make_fake, tmp_path):
    first, second = make_fake("first"), make_fake("second")
    relay = Relay(tmp_path, first.url, second.url)
    earn(second, relay)  # only the second pays: Go's loop bug would print it twice
    result = relay.cli("balance")
    assert result.returncode == 0, result.stderr
    assert logged(result) == [NO_CONTRACT]
    documents = result.stdout.split("\n}\n")
    assert documents[-1] == "" and len(documents) == 3
    printed = [json.loads(doc + "}") for doc in documents[:2]]
    assert [(p["contract"], p["balance"]["available"]) for p in printed] == [
        (first.url, 0), (second.url, EARNED)]


def test_balance_of_a_contract_not_in_the_config(make_fake, tmp_path):
    configured, other = make_fake("configured"), make_fake("other")
    relay = Relay(tmp_path, configured.url)
    earn(other, relay)
    result = relay.cli("balance", "-contract", other.url)  # Go's single-dash spelling
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout)["balance"]["available"] == EARNED


def test_balance_unreachable_contract(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    relay = Relay(tmp_path, url)
    result = relay.cli("balance")
    assert (result.returncode, result.stdout) == (1, "")
    lines = logged(result)
    assert lines[0] == NO_CONTRACT and len(lines) == 4
    get = f"GET {url}/payout/balance: "
    for attempt, line in enumerate(lines[1:3], start=1):
        assert line.startswith(f"client: error performing {get}"), line
        assert line.endswith(f" on try {attempt} of 3, retrying in 0.05s..."), line
    assert lines[3].startswith("error while getting balance: "), lines[3]
    assert "Connection refused" in lines[3]


@pytest.mark.parametrize("path,message", [
    ("/payout/balance", "error while getting balance"),
    ("/payout/tokens", "error while getting accumulated tokens"),
    ("/payout/withdrawals", "error while getting withdrawal"),
])
def test_balance_api_errors(fake, relay, path, message):
    def refuse(request: Request):
        raise FakeError(403, "auth signature for Relay does not verify")

    fake.app.routes[path] = {"GET": refuse}
    assert_fatal(relay.cli("balance"), NO_CONTRACT,
                 f'{message}: {{"code":403,"description":"action not allowed",'
                 '"cause":"auth signature for Relay does not verify"}')


def test_balance_unknown_path_shows_status(fake, relay):
    result = relay.cli("balance", "--contract", fake.url + "/nowhere")
    assert_fatal(result, 'error while getting balance: '
                         '{"code":404,"description":"resource not found"}')


@pytest.mark.parametrize("url,problem", [
    ("contract.example.com", "must be http(s)://host[:port][/path]"),
    ("http://[::1", "Invalid IPv6 URL"),
    ("http://127.0.0.1:port", "Port could not be cast to integer value as 'port'"),
])
def test_balance_unparsable_contract(relay, url, problem):
    assert_fatal(relay.cli("balance", "--contract", url),
                 f"invalid contract URL {json.dumps(url)}: {problem}")


def test_balance_needs_config_and_key(relay):
    os.unlink(relay.root / "key.seed")
    assert_fatal(relay.cli("balance"), NO_CONTRACT,
                 f"{relay.root}/key.seed does not exist: run `wireleap-relay init` first")
    os.unlink(relay.root / "config.json")
    assert_fatal(relay.cli("balance"), f"{relay.root}/config.json: no such file")


# --- withdraw ------------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    ((), "contract has to be set"),
    (("--destination", "acct", "--amount", "0"), "contract has to be set"),
    (("--contract", "URL", "--amount", "-3"), "destination has to be set"),
    (("--contract", "URL", "--destination", "acct"), "amount has to be set"),
    (("--contract", "URL", "--destination", "acct", "--amount", ""), "amount has to be set"),
    (("--contract", "URL", "--destination", "acct", "--amount", "1.5"),
     'strconv.ParseInt: parsing "1.5": invalid syntax'),
    (("--contract", "URL", "--destination", "acct", "--amount=9223372036854775808"),
     'strconv.ParseInt: parsing "9223372036854775808": value out of range'),
    (("--contract", "URL", "--destination", "acct", "--amount", "0"),
     "withdrawal request amount is invalid (<= 0): 0"),
    (("-contract", "URL", "-destination=acct", "-amount", "-3"),
     "withdrawal request amount is invalid (<= 0): -3"),
    (("--contract", "contract.example.com", "--destination", "acct", "--amount", "5"),
     'invalid contract URL "contract.example.com": must be http(s)://host[:port][/path]'),
])
def test_withdraw_checks_in_order(fake, relay, args, message):
    args = tuple(a.replace("URL", fake.url) for a in args)
    assert_fatal(relay.cli("withdraw", *args), message)
    assert fake.snapshot()["withdrawals"] == {}


def test_withdraw_needs_config_then_key(fake, relay):
    os.unlink(relay.root / "key.seed")
    args = ("withdraw", "--contract", fake.url, "--destination", "acct", "--amount", "1.5")
    assert_fatal(relay.cli(*args),
                 f"{relay.root}/key.seed does not exist: run `wireleap-relay init` first")
    (relay.root / "config.json").write_text("{")
    assert_fatal(relay.cli("withdraw"), f"{relay.root}/config.json: not valid JSON: "
                                        "Expecting property name enclosed in double quotes: "
                                        "line 1 column 2 (char 1)")


def test_withdraw_then_balance(fake, relay):
    earn(fake, relay)
    seen = record_requests(fake)
    before = fake.now()
    result = relay.cli("withdraw", "--contract", fake.url, "--destination", "acct_1032D82e",
                       "--amount", "50")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    withdrawal = json.loads(result.stdout)
    assert result.stdout == compact(withdrawal) + "\n"  # the contract's bytes, untouched
    assert re.fullmatch(r"wd_[0-9a-f]{16}", withdrawal.pop("id"))
    assert before <= withdrawal.pop("state_changed") <= fake.now()
    assert withdrawal == {"state": "pending", "amount": 50, "type": "TODO",
                          "destination": "acct_1032D82e"}
    [post] = seen
    assert (post.method, post.path) == ("POST", "/payout/withdrawals")
    assert post.body == b'{"amount":50,"type":"TODO","destination":"acct_1032D82e"}'
    assert re.fullmatch(r"[0-9a-f]{32}", post.headers["Idempotency-Key"])
    assert "Wireleap-Relay-Dir-Version" not in post.headers

    after = relay.cli("balance")
    assert after.returncode == 0, after.stderr
    shown = json.loads(after.stdout)
    assert shown["balance"] == {"currency": "usd", "available": EARNED - 50}
    assert shown["withdrawal"]["state"] == "complete"  # withdrawal_delay 0: done at once
    assert shown["withdrawal"]["amount"] == 50


def test_withdraw_while_one_is_pending(make_fake, tmp_path):
    fake = make_fake(withdrawal_delay=3600)
    relay = Relay(tmp_path, fake.url)
    earn(fake, relay)
    args = ("withdraw", "--contract", fake.url, "--destination", "acct", "--amount", "10")
    first = relay.cli(*args)
    assert first.returncode == 0, first.stderr
    assert_fatal(relay.cli(*args), PENDING_409)

    shown = json.loads(relay.cli("balance").stdout)
    assert shown["balance"] == {"currency": "usd", "available": EARNED, "pending": -10}
    assert shown["withdrawal"] == json.loads(first.stdout)


def test_withdraw_more_than_available(fake, relay):
    assert_fatal(relay.cli("withdraw", "--contract", fake.url, "--destination", "acct",
                           "--amount", "5"), TOO_LARGE_403)  # 403 is not retried


def test_withdraw_payments_unreachable(fake, relay):
    earn(fake, relay)
    requests.post(f"{fake.url}/_fake/payments", json={"unreachable": True},
                  timeout=5).raise_for_status()
    seen = record_requests(fake)
    url = f"{fake.url}/payout/withdrawals"
    result = relay.cli("withdraw", "--contract", fake.url, "--destination", "acct",
                       "--amount", "10")
    assert (result.returncode, result.stdout) == (1, "")
    lines = logged(result)
    assert len(lines) == 3 and lines[2] == UNREACHABLE_502
    for attempt, line in enumerate(lines[:2], start=1):
        assert line.startswith(f"client: error performing POST {url}: "), line
        assert line.endswith(f"{UNREACHABLE_502} on try {attempt} of 3, retrying in 0.05s...")
    assert len(seen) == 3
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1  # one logical request
    assert len({r.body for r in seen}) == 1
    assert fake.snapshot()["withdrawals"] == {}
