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
