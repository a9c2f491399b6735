"""`wireleap-relay restart` while the real Go client downloads through the relay: the
running transfer finishes intact on the old relay, and the client's next download works
once the old relay has gone."""

import os
import signal
import subprocess

from wireleap_relay import pidfile
from wireleap_relay.testing.relayproc import make_home

from .conftest import (
    FAST,
    SLOW_SECONDS,
    curl_args,
    download,
    run_cli,
    sha256_file,
    wait_for,
)


class Daemon:
    """A relay of this project started in the background (`wireleap-relay start`);
    `stop()` stops it and any master it handed over from."""

    def __init__(self, root: str, contract_url: str) -> None:
        self.relay = make_home(root, "daemon", contract_url, "backing")
        self.home = self.relay.home
        self.masters: list[int] = []

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return run_cli(self.home, *args, env=FAST)

    def pid(self) -> int | None:
        return pidfile.read_quietly(self.home.pid_file)

    def log_text(self) -> str:
        with open(self.home.log_file, errors="replace") as f:
            return f.read()

    def start(self) -> "Daemon":
        started = self.cli("start")
        assert started.returncode == 0, started.stdout + started.stderr
        self.masters.append(self.pid())
        return self

    def stop(self) -> None:
        if self.pid() is not None:
            self.cli("stop")
        for pid in self.masters:
            if pidfile.alive(pid):
                os.kill(pid, signal.SIGTERM)
        for pid in self.masters:
            if not wait_for(lambda p=pid: not pidfile.alive(p), timeout=15):
                os.kill(pid, signal.SIGKILL)


def test_restart_during_a_go_client_download(network, go_client, web, curl, tmp_path, stopper):
    daemon = stopper.add(Daemon(str(tmp_path), network.contract.url)).start()
    go_client.circuit(1, [daemon.relay.address])  # re-reads the directory's relay list
    old = daemon.pid()

    out = str(tmp_path / "during")
    transfer = subprocess.Popen(curl_args(curl, go_client, web.base + "/slow", out),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: "tcp (target) via contract" in daemon.log_text(), timeout=5)
        restarted = daemon.cli("restart")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        new = daemon.pid()
        daemon.masters.append(new)
        assert new != old and f"restarted wireleap-relay daemon (pid {old} -> {new})" \
            in restarted.stderr
        assert transfer.poll() is None, "the transfer should still run across the hand-over"
        stdout, stderr = transfer.communicate(timeout=2 * SLOW_SECONDS + 5)
    finally:
        if transfer.poll() is None:
            transfer.kill()
            transfer.wait()
    assert (transfer.returncode, stdout) == (0, "200"), stderr
    assert sha256_file(out) == web.sha256

    # The old master leaves once its streams are done; the client then needs a new
    # connection to the relay's address, which the new master serves.
    assert wait_for(lambda: not pidfile.alive(old), timeout=30), daemon.log_text()[-3000:]
    after = str(tmp_path / "after")
    done = download(curl, go_client, web.base + "/blob", after)
    assert (done.returncode, done.stdout) == (0, "200"), done.stderr
    assert sha256_file(after) == web.sha256
    assert daemon.cli("status").returncode == 0 and daemon.pid() == new
