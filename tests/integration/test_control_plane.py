"""The relay and its contracts, with a real HTTP fake contract+directory and relays as
subprocesses: enrollment, heartbeats, upgrade notices, disenrollment, gating, and the
money path from circuits to submitted, settled sharetokens."""

import json
import os
import random
import signal
import time

import pytest
import requests
from conftest import FAST, echo_once, hops, recv_exactly, run_cli, wait_for

from wireleap_relay.testing import circuit
from wireleap_relay.testing.fake_contract import FakeContract
from wireleap_relay.testing.relayproc import RelayProcess, free_port, make_home
from wireleap_relay.testing.servicekey import Wallet
from wireleap_relay.wire import b64


@pytest.fixture
def procs():
    running = []
    yield running
    for proc in running:
        proc.stop()


def start_relay(tmp_path, procs, contract_urls, role="backing", name="relay", **cfg):
    relay = make_home(str(tmp_path), name, contract_urls[0], role, **cfg)
    if len(contract_urls) > 1:
        with open(relay.home.config) as f:
            config = json.load(f)
        entry = config["contracts"][contract_urls[0]]
        for url in contract_urls[1:]:
            config["contracts"][url] = dict(entry)
        with open(relay.home.config, "w") as f:
            json.dump(config, f)
    proc = RelayProcess(relay, env=FAST)
    procs.append(proc)
    return proc


def listed(fake) -> dict:
    return requests.get(fake.url + "/dir/relays", timeout=10).json()


@pytest.mark.parametrize("challenge", [True, False])
def test_enrolls_at_start_and_disenrolls_on_sigterm(tmp_path, make_fake, procs, challenge):
    fake = make_fake(challenge=challenge)
    proc = start_relay(tmp_path, procs, [fake.url]).start()
    entry = listed(fake)[proc.relay.address]
    assert entry["pubkey"] == b64.encode(proc.relay.pubkey)
    assert entry["role"] == "backing"
    assert entry["versions"]["client-relay"] == "0.2.0"
    assert fake.snapshot()["challenges"] == {}  # a challenge was issued and used, or none
    assert f"Enrolled successfully as backing relay into {fake.url}" in proc.log_text()
    assert proc.stop() == 0  # a graceful stop is a success
    assert proc.relay.address not in listed(fake)


def test_wrong_enrollment_key_fails_start_and_leaves_nothing_enrolled(tmp_path, make_fake, procs):
    open_fake = make_fake()
    strict_fake = make_fake(enrollment_keys={"backing": ["right:key"]})
    proc = start_relay(tmp_path, procs, [open_fake.url, strict_fake.url], key="wrong:key")
    result = run_cli(proc.relay.home, "start", env=FAST)
    assert result.returncode == 1
    assert f"could not perform challenge-response proof of work for contract " \
           f"{strict_fake.url}" in result.stdout
    assert "enrollment key is incorrect" in result.stdout
    assert listed(open_fake) == {} and listed(strict_fake) == {}
    assert not os.path.exists(proc.relay.home.pid_file)


def test_contract_down_at_start_is_a_clear_failure(tmp_path, procs):
    down = f"http://127.0.0.1:{free_port()}"
    proc = start_relay(tmp_path, procs, [down])
    result = run_cli(proc.relay.home, "start", env=FAST)
    assert result.returncode == 1
    assert f"could not get pubkey for {down}: could not get contract info from {down}/info: " \
        in result.stdout
    assert f"client: error performing GET {down}/info: " in result.stdout
    assert "on try 1 of 3" in result.stdout and "on try 2 of 3" in result.stdout


def test_heartbeats_re_enroll_after_the_directory_forgot(tmp_path, make_fake, procs):
    fake = make_fake()
    proc = start_relay(tmp_path, procs, [fake.url]).start()
    assert requests.post(fake.url + "/_fake/expire_relays", timeout=10).json()["expired"] == 1
    assert listed(fake) == {}
    assert wait_for(lambda: proc.relay.address in listed(fake)), "re-enrollment"


def test_upgrade_notice_is_logged_once_and_skipped(tmp_path, make_fake, procs):
    fake = make_fake()
    proc = start_relay(tmp_path, procs, [fake.url]).start()
    requests.post(fake.url + "/_fake/upgrade", json={"relay": "9.9.9"}, timeout=10)
    skip = os.path.join(proc.relay.home.root, ".skip-upgrade-version")
    assert wait_for(lambda: os.path.exists(skip)), "the skip file"
    time.sleep(1.0)  # several more heartbeats carry the same notice
    assert open(skip).read() == '"9.9.9"'
    log = proc.log_text()
    assert log.count("There is a new wireleap-relay version available: 9.9.9. Since this "
                     "binary was not built with upgrade support, please upgrade manually.") == 1


def test_streams_are_refused_for_contracts_not_enrolled(tmp_path, make_fake, procs, echo_server):
    fake = make_fake()
    proc = start_relay(tmp_path, procs, [fake.url]).start()
    assert echo_once(proc, Wallet(fake.url), echo_server)
    other = make_fake(contract_seed=b"\x07" * 32)
    refused = circuit.dial(hops([proc]), echo_server, "tcp", *Wallet(other.url).current(),
                           pool=circuit.ConnectionPool())
    refused.settimeout(20)
    assert refused.recv(10) == b""
    assert refused.status.description == \
        f"relay contract not found: {b64.encode(other.contract_pubkey)}"


def _make_tokens(proc, wallet, target, count):
    pool = circuit.ConnectionPool()
    for _ in range(count):
        pipe = circuit.dial(hops([proc]), target, "tcp", *wallet.current(), pool=pool)
        pipe.settimeout(20)
        pipe.sendall(b"$")
        assert recv_exactly(pipe, 1) == b"$"
        pipe.close()
    pool.close()


def _pending(proc) -> list[str]:
    found = []
    root = proc.relay.home.sharetokens
    for contract in os.listdir(root) if os.path.isdir(root) else []:
        if contract not in ("expired", "malformed"):
            found += os.listdir(os.path.join(root, contract))
    return [f for f in found if f.endswith(".json")]


def test_money_path_tokens_submitted_archived_and_settled(tmp_path, make_fake, procs, echo_server):
    fake = make_fake(servicekey_duration=3, submission_window=600)
    proc = start_relay(tmp_path, procs, [fake.url], auto_submit_interval="1s",
                       archive_dir="archive").start()
    wallet = Wallet(fake.url, margin=0)
    _make_tokens(proc, wallet, echo_server, 5)
    assert len(_pending(proc)) == 5
    assert wait_for(lambda: len(fake.snapshot()["tokens"]) == 5), "submission"
    assert wait_for(lambda: not _pending(proc)), "pending store emptied"
    archive = os.path.join(proc.relay.home.root, "archive",
                           b64.encode(fake.contract_pubkey))
    assert len(os.listdir(archive)) == 5
    assert set(fake.snapshot()["submissions"].values()) == {1}
    requests.post(fake.url + "/_fake/clock", json={"offset": 700}, timeout=10)
    balance = run_cli(proc.relay.home, "balance")
    assert balance.returncode == 0, balance.stderr
    assert json.loads(balance.stdout)["balance"]["available"] == 95
    withdrawn = run_cli(proc.relay.home, "withdraw", "--contract", fake.url, "--destination",
                    "acct_test", "--amount", "40")
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert json.loads(withdrawn.stdout)["amount"] == 40
    after = json.loads(run_cli(proc.relay.home, "balance").stdout)
    assert after["balance"]["available"] == 55
    assert after["withdrawal"]["amount"] == 40


def test_contract_down_for_a_while_then_every_token_arrives(tmp_path, make_fake, procs,
                                                            echo_server):
    fake = make_fake(servicekey_duration=2, submission_window=600)
    port = int(fake.url.rsplit(":", 1)[1])
    state_dir = str(tmp_path / "contract0")
    proc = start_relay(tmp_path, procs, [fake.url], auto_submit_interval="0.5s").start()
    _make_tokens(proc, Wallet(fake.url, margin=0), echo_server, 4)
    fake.stop()
    assert wait_for(lambda: "retrying in 0.5s" in proc.log_text()), "a failed submission"
    assert len(_pending(proc)) == 4
    back = FakeContract(state_dir, port=port, servicekey_duration=2,
                        submission_window=600).start()
    try:
        assert wait_for(lambda: len(back.snapshot()["tokens"]) == 4), "delivery after return"
        assert wait_for(lambda: not _pending(proc)), "pending store emptied"
    finally:
        back.stop()


def test_tokens_of_a_contract_removed_from_the_config_are_still_submitted(
        tmp_path, make_fake, procs, echo_server):
    """Tokens are money: removing a contract from config.json stops new streams under it,
    not the settlement of what it already owes."""
    kept = make_fake("kept", servicekey_duration=2, submission_window=600)
    removed = make_fake("removed", servicekey_duration=2, submission_window=600,
                        contract_seed=b"\x08" * 32)
    proc = start_relay(tmp_path, procs, [kept.url, removed.url],
                       auto_submit_interval="0.5s").start()
    _make_tokens(proc, Wallet(removed.url, margin=0), echo_server, 3)
    assert wait_for(lambda: os.path.exists(proc.relay.home.sharetokens + ".contracts.json"))
    with open(proc.relay.home.config) as f:
        config = json.load(f)
    del config["contracts"][removed.url]
    with open(proc.relay.home.config, "w") as f:
        json.dump(config, f)
    assert run_cli(proc.relay.home, "reload", env=FAST).returncode == 0
    assert wait_for(lambda: proc.relay.address not in listed(removed)), "disenrolled"
    assert wait_for(lambda: len(removed.snapshot()["tokens"]) == 3), "submitted after removal"
    assert wait_for(lambda: not _pending(proc))


def test_crashed_writes_leave_no_temp_files_for_long(tmp_path, make_fake, procs):
    fake = make_fake(servicekey_duration=2, submission_window=600)
    proc = start_relay(tmp_path, procs, [fake.url], auto_submit_interval="0.3s")
    folder = os.path.join(proc.relay.home.sharetokens, b64.encode(fake.contract_pubkey))
    os.makedirs(folder)
    old = os.path.join(folder, ".abc.json.x1y2z3")  # as write_atomic names its temp files
    fresh = os.path.join(folder, ".def.json.a1b2c3")
    for path in (old, fresh):
        with open(path, "w") as f:
            f.write('{"partial":')
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    proc.start()
    assert wait_for(lambda: not os.path.exists(old))
    assert os.path.exists(fresh)  # it may be a write in progress
    assert f"removed {old}, left by a write that crashed" in proc.log_text()


def test_window_closed_tokens_are_discarded(tmp_path, make_fake, procs, echo_server):
    fake = make_fake(servicekey_duration=2, submission_window=600)
    proc = start_relay(tmp_path, procs, [fake.url], auto_submit_interval="0.5s").start()
    _make_tokens(proc, Wallet(fake.url, margin=0), echo_server, 3)
    requests.post(fake.url + "/_fake/clock", json={"offset": 10_000}, timeout=10)
    expired = os.path.join(proc.relay.home.sharetokens, "expired",
                           b64.encode(fake.contract_pubkey))
    assert wait_for(lambda: os.path.isdir(expired) and len(os.listdir(expired)) == 3), \
        "tokens set aside"
    assert not _pending(proc)
    assert fake.snapshot()["tokens"] == {}
    assert "discarding sharetoken submitted post-settlement" in proc.log_text()


def test_sigkill_during_submission_loses_and_doubles_nothing(tmp_path, make_fake, procs,
                                                             echo_server):
    fake = make_fake(servicekey_duration=2, submission_window=600, submit_delay=0.1)
    proc = start_relay(tmp_path, procs, [fake.url], auto_submit_interval="0.2s")
    proc.start()
    _make_tokens(proc, Wallet(fake.url, margin=0), echo_server, 120)
    made = set(_pending(proc))
    assert len(made) == 120
    rng = random.Random(7)
    left_at_kill = []
    for _ in range(4):
        if not _pending(proc):
            break
        accepted = len(fake.snapshot()["tokens"])
        assert wait_for(lambda n=accepted: len(fake.snapshot()["tokens"]) > n), "progress"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.proc.send_signal(signal.SIGKILL)  # leaves a stale pid file, as a crash does
        proc.proc.wait()
        left_at_kill.append(len(_pending(proc)))
        proc.start()
    assert any(0 < left < 120 for left in left_at_kill), left_at_kill  # killed mid-way
    assert wait_for(lambda: not _pending(proc), timeout=60), "all tokens submitted"
    state = fake.snapshot()
    assert {sig + ".json" for sig in state["tokens"]} == made  # every token, once each
    assert len(state["tokens"]) == 120
    print("pending at each kill:", left_at_kill, "requests:", state["submit_requests"])
