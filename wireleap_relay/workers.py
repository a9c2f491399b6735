"""Worker processes: the data plane runs in N processes accepting on the master's
listening socket (the gunicorn model), because one Python process uses one core.

The master talks to each worker over the worker's stdin, one JSON object per line: first
the config text the master validated (so master and workers never disagree about it), then
the gate state whenever enrollment changes. A worker whose stdin closes has lost its master
and stops. Duplicate sharetokens are refused across workers by the token store's exclusive
file creation, not by anything shared in memory.
"""

import json
import logging
import os
import signal
import socket
import subprocess
import time

import gevent

from wireleap_relay.contract.gate import GateState

log = logging.getLogger(__name__)

LISTEN_FD_ENV = "WIRELEAP_LISTEN_FD"
WATCH_INTERVAL = 0.2


class Worker:
    def __init__(self, command: list[str], listener: socket.socket, config_raw: bytes,
                 gate: GateState):
        read_end, self._pipe = os.pipe()
        fd = listener.fileno()
        self.proc = subprocess.Popen(command + ["worker"], stdin=read_end, pass_fds=(fd,),
                                     env=dict(os.environ, **{LISTEN_FD_ENV: str(fd)}))
        os.close(read_end)
        self.send({"config": config_raw.decode("utf-8")})
        self.send({"gate": gate.to_json()})

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, message: dict) -> None:
        try:
            os.write(self._pipe, (json.dumps(message) + "\n").encode())
        except OSError:
            pass  # it is gone; the supervisor notices and replaces it

    def terminate(self) -> None:
        """Stop accepting, finish running streams, exit (the worker's own grace bound)."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            os.close(self._pipe)
        except OSError:
            pass


class Supervisor:
    """Keeps `count` workers alive; replaces any that dies unless we are stopping."""

    def __init__(self, command: list[str], listener: socket.socket, count: int):
        self.command = command
        self.listener = listener
        self.count = count
        self.workers: list[Worker] = []
        self.config_raw = b""
        self.gate = GateState()
        self._stopping = False
        self._watcher: gevent.Greenlet | None = None

    def start(self, config_raw: bytes, gate: GateState) -> None:
        self.config_raw, self.gate = config_raw, gate
        self.workers = [self._spawn() for _ in range(self.count)]
        self._watcher = gevent.spawn(self._watch)

    def _spawn(self) -> Worker:
        worker = Worker(self.command, self.listener, self.config_raw, self.gate)
        log.info("started worker %d", worker.pid)
        return worker

    def _watch(self) -> None:
        while not self._stopping:
            for i, worker in enumerate(self.workers):
                if not worker.alive and not self._stopping:
                    log.info("worker %d exited with %s, starting another", worker.pid,
                             worker.proc.returncode)
                    self.workers[i] = self._spawn()
            gevent.sleep(WATCH_INTERVAL)

    def broadcast(self, gate: GateState) -> None:
        self.gate = gate
        for worker in self.workers:
            worker.send({"gate": gate.to_json()})

    def replace_all(self, config_raw: bytes) -> None:
        """New workers with the new config first, then the old ones drain and leave: the
        listening socket is never without a worker."""
        old = self.workers
        self.config_raw = config_raw
        self.workers = [self._spawn() for _ in range(self.count)]
        for worker in old:
            worker.terminate()
            gevent.spawn(worker.proc.wait)  # reap it once it has drained

    def stop(self, grace: float) -> None:
        self._stopping = True
        for worker in self.workers:
            worker.terminate()
        deadline = time.monotonic() + grace
        for worker in self.workers:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.info("worker %d did not finish in time, killing it", worker.pid)
                worker.proc.kill()
                worker.proc.wait()
