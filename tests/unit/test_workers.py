"""The supervisor's start-up failures: a worker that cannot even be started is a
WorkerFailed like one that dies while starting, and leaves no fds or processes behind."""

import os
import socket

import gevent
import pytest

from wireleap_relay.contract.gate import GateState
from wireleap_relay.workers import Supervisor, WorkerFailed


def open_fds() -> int:
    gevent.sleep(0.1)  # gevent's os.close closes once its loop has run
    return len(os.listdir("/proc/self/fd"))


def test_a_worker_that_cannot_be_started_is_a_worker_failure(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    before = open_fds()
    supervisor = Supervisor([str(tmp_path / "no-such-binary")], listener, 2)
    with pytest.raises(WorkerFailed, match="could not start a worker"):
        supervisor.start(b"{}", GateState())
    assert open_fds() == before
    listener.close()


def test_a_worker_that_dies_while_starting_leaves_nothing(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    before = open_fds()
    supervisor = Supervisor(["/bin/false"], listener, 2)
    with pytest.raises(WorkerFailed, match="exited while starting"):
        supervisor.start(b"{}", GateState())
    assert open_fds() == before
    listener.close()
