"""Daemon control as an operator uses it: `start` in the background, `status`, `stop`,
`restart`, with real processes and signals in a temporary home."""

import json
import os
import socket
import subprocess

import pytest
from conftest import run_cli, wait_for

from wireleap_relay import pidfile
from wireleap_relay.testing import circuit
from wireleap_relay.testing.relayproc import make_home
from wireleap_relay.version import software_version
from wireleap_relay.wire import b64


def pid_of(relay) -> int:
    with open(relay.home.pid_file) as f:
        return int(f.read())


@pytest.fixture
def relay(tmp_path, contract):
    home = make_home(str(tmp_path), "relay", contract.url, "backing")
    yield home
    if os.path.exists(home.home.pid_file):
        run_cli(home.home, "stop")


def test_start_status_stop_round_trip(relay):
    assert (run_cli(relay.home, "status").returncode, run_cli(relay.home, "status").stdout) == (
        1, "wireleap-relay is not running\n")
    started = run_cli(relay.home, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    pid = pid_of(relay)
    assert f"successfully spawned wireleap-relay with pid {pid}" in started.stderr
    assert pidfile.alive(pid)
    with open(f"/proc/{pid}/stat") as f:
        assert int(f.read().rsplit(")", 1)[1].split()[1]) != os.getpid()  # not our child
    status = run_cli(relay.home, "status")
    assert (status.returncode, status.stdout) == (0, f"wireleap-relay is running, pid {pid}\n")
    pong = circuit.ping(relay.address, pool=circuit.ConnectionPool())
    assert pong.origin == b64.encode(relay.pubkey)

    again = run_cli(relay.home, "start")
    assert again.returncode == 1
    assert "wireleap-relay daemon is already running!" in again.stderr
    assert pid_of(relay) == pid

    stopped = run_cli(relay.home, "stop")
    assert stopped.returncode == 0
    assert f"stopped wireleap-relay daemon (was pid {pid})" in stopped.stderr
    assert not pidfile.alive(pid)
    assert not os.path.exists(relay.home.pid_file)
    assert run_cli(relay.home, "status").returncode == 1
    with open(relay.home.log_file) as f:
        log = f.read()
    assert "Listening for H/2 requests on https://127.0.0.1:" in log
    assert "handling signal 15: SIGTERM..." in log
    banner = next(line for line in log.splitlines() if " starting: " in line)
    assert banner.endswith(
        f" wireleap-relay {software_version()} starting: pid {pid}, home {relay.home.root}, "
        f"{os.cpu_count()} workers, listening on 127.0.0.1:{relay.port}, public key "
        f"{b64.encode(relay.pubkey)}, contracts: {next(iter(contract_urls(relay)))} "
        "(backing)")


def contract_urls(relay) -> list[str]:
    with open(relay.home.config) as f:
        return list(json.load(f)["contracts"])


def test_restart_gives_a_new_daemon(relay):
    assert run_cli(relay.home, "start").returncode == 0
    first = pid_of(relay)
    restarted = run_cli(relay.home, "restart")
    assert restarted.returncode == 0, restarted.stderr
    second = pid_of(relay)
    assert second != first and pidfile.alive(second)
    assert wait_for(lambda: not pidfile.alive(first))  # retires once its streams are done
    assert run_cli(relay.home, "status").stdout == f"wireleap-relay is running, pid {second}\n"


def test_restart_keeps_the_old_relay_when_the_new_one_cannot_start(relay):
    assert run_cli(relay.home, "start").returncode == 0
    first = pid_of(relay)
    with open(relay.home.key_seed, "w") as f:
        f.write('"broken"')  # the new master cannot load the identity; the old one has it
    restarted = run_cli(relay.home, "restart")
    assert restarted.returncode == 1
    assert "did not restart, the running one keeps serving" in restarted.stderr
    assert "has invalid seed size" in restarted.stdout
    assert pid_of(relay) == first and pidfile.alive(first)
    assert circuit.ping(relay.address, pool=circuit.ConnectionPool()).code == 200


def test_start_with_a_broken_config_fails_with_the_reason(relay):
    with open(relay.home.config, "w") as f:
        f.write('{"address": "127.0.0.1:1", "timeout": "300ms", "contracts": {}}')
    result = run_cli(relay.home, "start")
    assert result.returncode == 1
    assert "wireleap-relay is not running" in result.stderr
    assert "could not validate config file: timeout: invalid duration '300ms'" in result.stdout
    assert "contracts: at least one service contract has to be set" in result.stdout
    assert not os.path.exists(relay.home.pid_file)


def test_start_with_the_port_taken_fails_with_the_reason(relay):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", relay.port))
        squatter.listen(1)
        result = run_cli(relay.home, "start")
    assert result.returncode == 1
    assert f"could not listen on 127.0.0.1:{relay.port}" in result.stdout
    assert "Address already in use" in result.stdout


def test_stale_pid_file_is_cleared_by_start(relay):
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(relay.home.pid_file, "w") as f:
        f.write(str(dead.pid))
    assert run_cli(relay.home, "status").stdout == \
        "wireleap-relay is not running (might have crashed, see wireleap-relay.log)\n"
    started = run_cli(relay.home, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"removing stale pid file {relay.home.pid_file} (pid {dead.pid} is not running)" \
        in started.stderr
    assert pid_of(relay) != dead.pid


@pytest.mark.parametrize("content", ["", "not a pid", "\x00\x00", "-3", "true"])
def test_a_garbled_pid_file_is_stale(relay, content):
    """Empty after a crash mid-write, or garbage: said plainly, and no obstacle to start
    (it used to end start and restart in a traceback)."""
    with open(relay.home.pid_file, "w") as f:
        f.write(content)
    said = f"{relay.home.pid_file} holds {content.encode()!r}, not a process id"
    result = run_cli(relay.home, "status")
    assert (result.returncode, result.stdout) == (1, f"wireleap-relay is not running ({said})\n")
    started = run_cli(relay.home, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"removing unusable pid file: {said}" in started.stderr
    assert "Traceback" not in started.stdout + started.stderr
    assert run_cli(relay.home, "stop").returncode == 0
    with open(relay.home.pid_file, "w") as f:
        f.write(content)
    stop = run_cli(relay.home, "stop")
    assert stop.returncode == 1
    assert f"wireleap-relay is not running (removed its pid file: {said})" in stop.stderr
    assert not os.path.exists(relay.home.pid_file)


def test_an_unreadable_pid_file_status_cannot_tell(relay):
    os.mkdir(relay.home.pid_file)  # a pid file that cannot be read at all
    try:
        result = run_cli(relay.home, "status")
        assert (result.returncode, result.stdout) == \
            (2, "could not read wireleap-relay status\n")
        for command in ("start", "restart"):
            result = run_cli(relay.home, command)
            assert result.returncode == 1
            assert result.stderr.strip().endswith(
                f"cannot tell whether wireleap-relay is running: could not read "
                f"{relay.home.pid_file}: Is a directory; fix or remove it first")
            assert "Traceback" not in result.stderr
    finally:
        os.rmdir(relay.home.pid_file)


def test_stop_without_a_daemon(relay):
    result = run_cli(relay.home, "stop")
    assert result.returncode == 1
    assert f"wireleap-relay is not running (there is no {relay.home.pid_file})" in \
        result.stderr
