"""The supervisor's start-up failures: a worker that cannot even be started is a
WorkerFailed like one that dies while starting, and leaves no fds or processes behind."""

import os
import socket
import sys

import gevent
import pytest

from wireleap_relay.contract.gate import GateState
from wireleap_relay.reports import Tally
from wireleap_relay.workers import Launcher, Supervisor, Worker, WorkerFailed


def open_fds() -> int:
    gevent.sleep(0.1)  # gevent's os.close closes once its loop has run
    return len(os.listdir("/proc/self/fd"))


def test_a_worker_that_cannot_be_started_is_a_worker_failure(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    before = open_fds()
    supervisor = Supervisor(Launcher([str(tmp_path / "no-such-binary")]), listener, 2)
    with pytest.raises(WorkerFailed, match="could not start a worker"):
        supervisor.start(b"{}", GateState())
    assert open_fds() == before
    listener.close()


def test_a_worker_that_dies_while_starting_leaves_nothing(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    before = open_fds()
    supervisor = Supervisor(Launcher(["/bin/false"]), listener, 2)
    with pytest.raises(WorkerFailed, match="exited while starting"):
        supervisor.start(b"{}", GateState())
    assert open_fds() == before
    listener.close()


def test_a_message_that_does_not_fit_whole_kills_the_worker(monkeypatch):
    """A nearly full pipe takes only part of a line: the rest would garble every later
    message, so the worker is treated as one that does not read (killed), not sent half."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    idle = [sys.executable, "-c", "import time; time.sleep(60)"]
    worker = Worker(Launcher(idle), listener, b"{}", GateState(), Tally())
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:len(data) // 2]))
    worker.send({"gate": GateState(started=True).to_json()})
    monkeypatch.undo()
    assert worker.proc.wait(timeout=10) == -9
    worker.close()
    listener.close()


class RecordingLauncher(Launcher):
    def __init__(self):
        super().__init__([sys.executable, "-c", "import time; time.sleep(60)"])
        self.envs = []

    def launch(self, stdin, fds, env):
        self.envs.append(env)
        return super().launch(stdin, fds, env)


def test_a_worker_is_not_given_the_systemd_notify_socket(monkeypatch):
    """With NotifyAccess=all, anything a worker sent there would count as the relay's own
    word: whether forked or exec'd, a worker's environment lacks NOTIFY_SOCKET."""
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WIRELEAP_SOMETHING_ELSE", "kept")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    launcher = RecordingLauncher()
    worker = Worker(launcher, listener, b"{}", GateState(), Tally())
    worker.kill()
    worker.proc.wait(timeout=10)
    worker.close()
    listener.close()
    (env,) = launcher.envs
    assert "NOTIFY_SOCKET" not in env and env["WIRELEAP_SOMETHING_ELSE"] == "kept"
