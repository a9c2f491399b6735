"""What a `Type=notify` unit hears from the relay (contrib/wireleap-relay.service): real
relay processes speak to a stand-in for systemd's $NOTIFY_SOCKET (no systemd runs here)
across start, reload, a hand-over and stop. After `restart` the new master must name
itself the main process, or systemd would go on tracking a pid that is gone."""

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import ROOT, require_binary, run_cli, wait_for

from wireleap_relay import pidfile, sdnotify
from wireleap_relay.testing import procstat
from wireleap_relay.testing.notifysocket import NotifySocket
from wireleap_relay.testing.relayproc import RelayProcess, make_home

UNIT = "wireleap-relay.service"


@pytest.fixture(params=[False, True], ids=["path", "abstract"])
def notify(request):
    sock = NotifySocket(abstract=request.param)
    yield sock
    sock.close()


def pid_of(relay) -> int:
    with open(relay.home.pid_file) as f:
        return int(f.read())


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def environment(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.decode().split("=", 1) for item in f.read().split(b"\0") if item)


def test_systemd_follows_start_reload_handover_and_stop(tmp_path, contract, notify):
    """As the unit runs it: `start --fg` is the main process, ExecReload is `reload`, the
    operator runs `restart`, and systemd stops the relay by SIGTERM to the main pid it was
    last told of."""
    relay = make_home(str(tmp_path), "relay", contract.url, "backing", workers=2)
    daemon = RelayProcess(relay, env=notify.env).start()
    first = daemon.proc.pid
    ready = notify.expect("READY", "1")
    assert (ready.sender, ready.fields["MAINPID"]) == (first, str(first))
    assert ready.fields["STATUS"] == \
        f"listening on 127.0.0.1:{relay.port} with 2 workers, 1 contract(s)"
    # With NotifyAccess=all a worker could speak for the relay: none may. Forked workers
    # keep the master's /proc/<pid>/environ whatever their os.environ says, so that file
    # cannot tell; test_workers checks the environment a worker is given.
    assert len(procstat.workers(first)) == 2
    assert environment(first)["NOTIFY_SOCKET"] == notify.address

    before = monotonic_usec()
    reloaded = run_cli(relay.home, "reload")
    assert reloaded.returncode == 0, reloaded.stderr
    reloading = notify.expect("RELOADING", "1")
    assert reloading.sender == first
    assert before <= int(reloading.fields["MONOTONIC_USEC"]) <= monotonic_usec()
    assert notify.expect("READY", "1").fields["MAINPID"] == str(first)

    restarted = run_cli(relay.home, "restart")
    assert restarted.returncode == 0, restarted.stderr
    second = pid_of(relay)
    assert second != first
    handed = notify.expect("MAINPID", str(second))
    assert (handed.sender, handed.fields["READY"]) == (second, "1")
    assert daemon.proc.wait(90) == 0  # the old master retired after its streams

    os.kill(second, signal.SIGTERM)
    assert notify.expect("STOPPING", "1").sender == second
    assert wait_for(lambda: not pidfile.alive(second))
    everything = notify.received()
    # The old master, handing over, never said it was stopping; no worker ever spoke.
    assert [m.sender for m in everything if "STOPPING" in m.fields] == [second]
    assert {m.sender for m in everything} == {first, second}


def test_background_start_a_refused_reload_and_stop(tmp_path, contract, notify):
    """`ExecStart=... start` (no --fg) works too: the daemon, not the `start` that
    launched it and exits, names itself. A refused reload ends in READY=1 with the reason:
    the relay goes on serving its running config."""
    relay = make_home(str(tmp_path), "relay", contract.url, "backing")
    try:
        started = run_cli(relay.home, "start", env=notify.env)
        assert started.returncode == 0, started.stdout + started.stderr
        pid = pid_of(relay)
        ready = notify.expect("READY", "1")
        assert (ready.sender, ready.fields["MAINPID"]) == (pid, str(pid))

        with open(relay.home.config) as f:
            cfg = json.load(f)
        cfg["address"] = "127.0.0.1:1"  # valid, but the daemon cannot take it without a restart
        with open(relay.home.config, "w") as f:
            json.dump(cfg, f)
        assert run_cli(relay.home, "reload").returncode == 1
        assert notify.expect("RELOADING", "1").sender == pid
        refused = notify.expect("READY", "1")
        assert refused.fields["MAINPID"] == str(pid)
        assert refused.fields["STATUS"] == (
            f"could not reload config, keeping the running one: address: changing it "
            f"(127.0.0.1:{relay.port} -> 127.0.0.1:1) needs a restart")

        assert run_cli(relay.home, "stop").returncode == 0
        assert notify.expect("STOPPING", "1").sender == pid
    finally:  # a failed assertion must not leave a daemon running
        if os.path.exists(relay.home.pid_file):
            run_cli(relay.home, "stop")


def test_the_sender_never_fails_the_daemon(monkeypatch, notify):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    for nowhere in ("/nonexistent/notify", "@wireleap-test-nobody-listens", "relative",
                    "vsock:2:1234"):
        monkeypatch.setenv("NOTIFY_SOCKET", nowhere)
        assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", notify.address)
    assert sdnotify.status("hello") is True
    said = notify.expect("STATUS")
    assert (said.sender, said.fields) == (os.getpid(), {"STATUS": "hello"})


def test_the_unit_file_verifies(tmp_path):
    """systemd's own checker reads contrib's unit (its binary path pointed at a file that
    exists here), and the README shows that very file."""
    analyze = require_binary("systemd-analyze")
    with open(os.path.join(ROOT, "contrib", UNIT)) as f:
        unit = f.read()
    with open(os.path.join(ROOT, "README.md")) as f:
        assert f"```ini\n{unit}```\n" in f.read()
    install = tmp_path / "opt"
    install.mkdir()
    (install / "wireleap-relay").write_text("#!/bin/sh\n")
    (install / "wireleap-relay").chmod(0o755)
    (tmp_path / UNIT).write_text(unit.replace("/opt/wireleap-relay", str(install)))
    verified = subprocess.run([analyze, "verify", str(tmp_path / UNIT)], capture_output=True,
                              text=True, timeout=60)
    assert (verified.returncode, verified.stderr) == (0, "")
