"""The daemon's life under load: workers that die are replaced, a token reaching two
workers at once is accepted once, reload applies a good config without cutting running
transfers and refuses a broken one, SIGTERM lets running transfers finish."""

import json
import os
import re
import signal

import gevent
import pytest
import requests
from conftest import (
    FAST,
    KeepConnecting,
    echo_byte_then_replay,
    echo_once,
    hops,
    random_bytes,
    run_cli,
    slow_download,
    two_worker_relay,
    wait_for,
)
from test_stream_errors import payload_for

from wireleap_relay.testing import circuit, procstat
from wireleap_relay.testing.fake_contract import FakeContract
from wireleap_relay.testing.h2client import connect
from wireleap_relay.testing.relayproc import RelayProcess, make_home
from wireleap_relay.testing.servicekey import Wallet

MiB = 1 << 20


@pytest.fixture
def relay(tmp_path, contract):
    yield from two_worker_relay(tmp_path, contract)


def workers_of(proc) -> list[int]:
    return workers_of_pid(proc.proc.pid)


def test_workers_serve_and_a_killed_one_is_replaced(relay, wallet, echo_server):
    first = workers_of(relay)
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    assert echo_once(relay, wallet, echo_server)  # the other worker keeps serving
    assert wait_for(lambda: replaced(relay, first[0]))
    assert f"worker {first[0]} exited with -9, starting another" in relay.log_text()
    for _ in range(6):
        assert echo_once(relay, wallet, echo_server)


def test_the_same_token_reaching_two_workers_at_once_is_accepted_once(relay, wallet,
                                                                     echo_server):
    """Rounds of 16 connections, each sending the same token at once: exactly one stream
    per round is served. Which worker accepts a connection is the kernel's choice, so the
    rounds go on until both workers have had a part (the store's race across processes is
    also tested directly in tests/unit/test_token_store.py)."""
    for _ in range(10):
        payload = payload_for(relay, wallet, f"target://{echo_server}")
        conns = [connect(relay.relay.address) for _ in range(16)]
        streams = [conn.open_stream(payload) for conn in conns]
        outcomes = []
        for stream in streams:
            stream.settimeout(20)
            try:
                stream.sendall(b"x")
            except OSError:
                pass  # a refused stream may already be over
            data = stream.recv(1)
            outcomes.append("ok" if data == b"x" else stream.status.description)
        for conn in conns:
            conn.close()
        assert outcomes.count("ok") == 1
        assert outcomes.count("duplicate sharetoken") == 15
        if len(set(re.findall(r"worker (\d+): stream \d+", relay.log_text()))) == 2:
            break
    assert len(set(re.findall(r"worker (\d+): stream \d+", relay.log_text()))) == 2


def test_reload_applies_to_new_streams_and_keeps_running_ones(relay, wallet, source_server,
                                                              echo_server):
    transfer = slow_download(relay, wallet, source_server, 24 * MiB)
    gevent.sleep(0.5)
    with open(relay.relay.home.config) as f:
        cfg = json.load(f)
    cfg["maxtime"] = "1s"
    with open(relay.relay.home.config, "w") as f:
        json.dump(cfg, f)
    old_workers = workers_of(relay)
    result = run_cli(relay.relay.home, "reload", env=FAST)
    assert result.returncode == 0, result.stderr
    assert f"reloaded wireleap-relay daemon (pid {relay.proc.pid})" in result.stderr
    assert wait_for(lambda: "config reloaded" in relay.log_text())
    new_pipe = circuit.dial(hops([relay]), echo_server, "tcp", *wallet.current(),
                            pool=circuit.ConnectionPool())
    new_pipe.settimeout(20)
    new_pipe.sendall(b"a")
    assert new_pipe.recv(1) == b"a"
    assert new_pipe.recv(1) == b""  # cut by the new maxtime
    assert new_pipe.status.code == 408
    assert new_pipe.status.description == "connection reached maxtime (1s)"
    assert transfer.get(timeout=60) == 24 * MiB  # the old stream outlived the new maxtime
    assert wait_for(lambda: not set(old_workers) & set(workers_of(relay)))


def test_broken_config_is_refused_and_the_relay_keeps_serving(relay, wallet, echo_server,
                                                              source_server):
    transfer = slow_download(relay, wallet, source_server, 16 * MiB)
    with open(relay.relay.home.config) as f:
        good = f.read()
    with open(relay.relay.home.config, "w") as f:
        f.write(good.replace('"backing"', '"backstage"'))
    result = run_cli(relay.relay.home, "reload", env=FAST)
    assert result.returncode == 1
    assert "role: must be one of fronting, entropic, backing, got 'backstage'" in result.stdout
    assert "not reloading: the running relay keeps its config" in result.stdout
    os.kill(relay.proc.pid, signal.SIGHUP)  # straight to the daemon, bypassing the CLI check
    assert wait_for(lambda: "could not reload config, keeping the running one" in
                    relay.log_text())
    assert echo_once(relay, wallet, echo_server)
    assert transfer.get(timeout=60) == 16 * MiB
    assert relay.proc.poll() is None


def test_reload_enrolls_added_contracts_and_leaves_removed_ones(tmp_path, contract, relay):
    second = FakeContract(str(tmp_path / "second"), contract_seed=b"\x08" * 32).start()
    try:
        with open(relay.relay.home.config) as f:
            cfg = json.load(f)
        entry = cfg["contracts"][contract.url]
        cfg["contracts"] = {second.url: entry}
        with open(relay.relay.home.config, "w") as f:
            json.dump(cfg, f)
        assert run_cli(relay.relay.home, "reload", env=FAST).returncode == 0
        assert wait_for(lambda: relay.relay.address in listed(second))
        assert wait_for(lambda: relay.relay.address not in listed(contract))
        pipe = circuit.dial(hops([relay]), "127.0.0.1:9", "tcp", *Wallet(second.url).current(),
                            pool=circuit.ConnectionPool())
        pipe.settimeout(20)
        assert pipe.recv(1) == b""
        assert pipe.status.code == 502  # admitted under the new contract; port 9 is closed
    finally:
        second.stop()


def listed(fake) -> list[str]:
    """The relay addresses in a fake contract's directory."""
    return requests.get(fake.url + "/dir/relays", timeout=10).json()


def test_a_reload_whose_workers_cannot_start_changes_nothing(tmp_path, contract, relay,
                                                             wallet, echo_server):
    """A config that is fine, but the workers cannot start (here: the TLS certificate they
    load was broken meanwhile). The directories, the gate and the workers stay as they
    were: the relay stays enrolled in the old contract only and serves its tokens under
    the old settings."""
    second = FakeContract(str(tmp_path / "second"), contract_seed=b"\x09" * 32).start()
    home = relay.relay.home
    try:
        with open(home.config) as f:
            cfg = json.load(f)
        cfg["contracts"] = {second.url: cfg["contracts"][contract.url]}
        cfg["maxtime"] = "1s"
        with open(home.config, "w") as f:
            json.dump(cfg, f)
        with open(home.tls_cert, "rb") as f:
            cert = f.read()
        with open(home.tls_cert, "wb") as f:
            f.write(b"not a certificate")
        workers = workers_of(relay)
        result = run_cli(home, "reload", env=FAST)
        with open(home.tls_cert, "wb") as f:
            f.write(cert)
        assert result.returncode == 1
        assert "could not start workers with the new config, keeping the running one" in \
            result.stderr
        assert relay.relay.address in listed(contract)
        assert relay.relay.address not in listed(second)
        gevent.sleep(1.0)  # a few heartbeats, each of which tells the workers the gate
        assert workers_of(relay) == workers
        pipe = circuit.dial(hops([relay]), echo_server, "tcp", *wallet.current(),
                            pool=circuit.ConnectionPool())
        pipe.settimeout(20)
        pipe.sendall(b"a")
        assert pipe.recv(1) == b"a"
        gevent.sleep(1.5)
        pipe.sendall(b"b")  # still open: the new maxtime (1s) does not apply
        assert pipe.recv(1) == b"b"
        pipe.close()
        refused = circuit.dial(hops([relay]), echo_server, "tcp",
                               *Wallet(second.url).current(), pool=circuit.ConnectionPool())
        refused.settimeout(20)
        assert refused.recv(1) == b""
        assert refused.status.description.startswith("relay contract not found")
    finally:
        second.stop()


def test_sigterm_lets_a_running_transfer_finish(relay, wallet, source_server, contract):
    transfer = slow_download(relay, wallet, source_server, 16 * MiB)
    gevent.sleep(0.5)
    relay.proc.send_signal(signal.SIGTERM)
    assert transfer.get(timeout=30) == 16 * MiB
    assert relay.proc.wait(30) == 0
    log = relay.log_text()
    assert "gracefully shutting down..." in log
    assert relay.relay.address not in requests.get(contract.url + "/dir/relays",
                                                   timeout=10).json()
    assert not os.path.exists(relay.relay.home.pid_file)


def test_restart_under_load_refuses_nothing_and_cuts_nothing(tmp_path, contract, wallet,
                                                            source_server, echo_server):
    """`restart` hands the listening socket to a new master: connections keep being
    accepted throughout, and a transfer running across the switch arrives whole."""
    proc = RelayProcess(make_home(str(tmp_path), "relay", contract.url, "backing", workers=2),
                        env=FAST).start()
    home = proc.relay.home
    try:
        transfer = slow_download(proc, wallet, source_server, 32 * MiB)
        prober = KeepConnecting(proc, wallet, echo_server)
        gevent.sleep(0.5)
        old = proc.proc.pid
        result = run_cli(home, "restart", env=FAST)
        assert result.returncode == 0, result.stdout + result.stderr
        new = int(open(home.pid_file).read())
        assert new != old and f"(pid {old} -> {new})" in result.stderr
        gevent.sleep(1.0)  # connections to the new master's workers
        prober.assert_none_failed()
        assert transfer.get(timeout=60) == 32 * MiB
        assert proc.proc.wait(70) == 0  # the old master retired once its streams finished
    finally:
        run_cli(home, "stop")


def pipe_ends(pid: int) -> list[str]:
    """The pipes a process holds an end of, as `pipe:[inode]`, one entry per descriptor."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return [link for link in links if link.startswith("pipe:")]


def dangling_pipes(master: int) -> set[str]:
    """Pipes of which the master holds one end and no live worker the other: the ends of
    workers that are gone. (gevent's own wake-up pipes have both ends in the master.)"""
    mine = pipe_ends(master)
    theirs = {link for worker in workers_of_pid(master) for link in pipe_ends(worker)}
    return {link for link in mine if mine.count(link) == 1 and link not in theirs}


def workers_of_pid(master: int) -> list[int]:
    return procstat.workers(master)


def replaced(proc, victim: int) -> bool:
    """Two workers again, the victim not among them (one reading of the list)."""
    now = workers_of(proc)
    return len(now) == 2 and victim not in now


def test_replacing_workers_leaks_no_descriptors(relay, wallet, echo_server):
    for _ in range(3):
        victim = workers_of(relay)[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda v=victim: replaced(relay, v))
    assert echo_once(relay, wallet, echo_server)
    # Settled (no worker half-spawned): the master holds the other end of each live
    # worker's stdin, and no pipe of a worker that is gone.
    assert wait_for(lambda: not dangling_pipes(relay.proc.pid) and all(
        stdin_of(worker) in pipe_ends(relay.proc.pid) for worker in workers_of(relay))), \
        dangling_pipes(relay.proc.pid)


def stdin_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/0")
    except OSError:
        return "gone"


def test_a_hung_worker_is_killed_and_replaced(tmp_path, contract, wallet, echo_server):
    """A worker whose loop is stuck (here: stopped) sends no heartbeats; the master
    kills it and starts another, and is not itself held up by it."""
    proc = RelayProcess(make_home(str(tmp_path), "relay", contract.url, "backing", workers=2),
                        env=dict(FAST, WIRELEAP_WORKER_HUNG_AFTER="3")).start()
    try:
        hung = workers_of(proc)[0]
        os.kill(hung, signal.SIGSTOP)
        assert wait_for(lambda: hung not in workers_of(proc) and len(workers_of(proc)) == 2,
                        timeout=30)
        assert f"worker {hung} sent no heartbeat for 3s, killing it" in proc.log_text()
        for _ in range(4):
            assert echo_once(proc, wallet, echo_server)
    finally:
        proc.stop()


def test_reload_lets_running_streams_outlive_the_stop_grace(relay, wallet, source_server):
    """Old workers drain for the hand-over grace (60 s), not the 10 s of a stop: this
    transfer takes about 20 s."""
    transfer = slow_download(relay, wallet, source_server, 8 * MiB, per_read=8 * 1024)
    gevent.sleep(0.5)
    assert run_cli(relay.relay.home, "reload", env=FAST).returncode == 0
    assert transfer.get(timeout=90) == 8 * MiB
    assert "did not finish in time" not in relay.log_text()


def test_reload_reports_the_daemons_refusal(relay, wallet, echo_server):
    """`reload` waits for the daemon's answer: a config valid on its own but one the
    running relay cannot take (a new listen address needs a restart) is reported as
    refused, exit 1, and the relay keeps serving as before."""
    with open(relay.relay.home.config) as f:
        cfg = json.load(f)
    cfg["address"] = "127.0.0.1:1"
    with open(relay.relay.home.config, "w") as f:
        json.dump(cfg, f)
    result = run_cli(relay.relay.home, "reload", env=FAST)
    assert result.returncode == 1
    assert (f"wireleap-relay daemon (pid {relay.proc.pid}) did not reload: could not reload "
            "config, keeping the running one: address: changing it") in result.stderr
    assert echo_once(relay, wallet, echo_server)


def test_the_master_counts_what_every_worker_relayed(relay, wallet, echo_server):
    """Bytes, connections and stream outcomes reach the master from each worker's reports,
    and the counts of workers replaced by a reload are kept: the summary at stop is exact."""
    block = random_bytes(100_000)
    for _ in range(3):
        assert echo_once(relay, wallet, echo_server, block)
    assert echo_byte_then_replay(relay, wallet, echo_server) == "duplicate sharetoken"
    old_workers = workers_of(relay)
    assert run_cli(relay.relay.home, "reload", env=FAST).returncode == 0
    assert wait_for(lambda: not set(old_workers) & set(workers_of(relay)))
    for _ in range(2):
        assert echo_once(relay, wallet, echo_server, block)
    assert relay.stop() == 0
    sent = 5 * len(block) + 1
    assert (f"stopped; the workers relayed {sent} bytes from clients and {sent} bytes from "
            f"remotes on 7 connections; streams: ok 6, refused 1") in relay.log_text()
