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
import gevent.os

from wireleap_relay.contract.gate import GateState

log = logging.getLogger(__name__)

LISTEN_FD_ENV = "WIRELEAP_LISTEN_FD"
READY_FD_ENV = "WIRELEAP_READY_FD"  # a worker writes one byte here once it serves
READY_TIMEOUT = 60.0
WATCH_INTERVAL = 0.2
QUICK_EXIT = 5.0  # a worker dying this soon after its start is crashing, not unlucky
MAX_BACKOFF = 30.0


class WorkerFailed(Exception):
    pass


class Worker:
    def __init__(self, command: list[str], listener: socket.socket, config_raw: bytes,
                 gate: GateState):
        read_end, self._pipe = os.pipe()
        self._ready, ready_write = os.pipe()
        fd = listener.fileno()
        env = dict(os.environ, **{LISTEN_FD_ENV: str(fd), READY_FD_ENV: str(ready_write)})
        self.proc = subprocess.Popen(command + ["worker"], stdin=read_end,
                                     pass_fds=(fd, ready_write), env=env)
        self.started = time.monotonic()
        os.close(read_end)
        os.close(ready_write)
        self.send({"config": config_raw.decode("utf-8")})
        self.send({"gate": gate.to_json()})

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until the worker serves; WorkerFailed if it died or took too long."""
        gevent.os.make_nonblocking(self._ready)
        try:
            with gevent.Timeout(timeout, WorkerFailed(f"worker {self.pid} did not start "
                                                      f"within {timeout:g}s")):
                if not gevent.os.nb_read(self._ready, 1):
                    raise WorkerFailed(f"worker {self.pid} exited while starting "
                                       f"(status {self.proc.wait()})")
        finally:
            os.close(self._ready)

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
        """Start the workers and wait until all serve; WorkerFailed if one cannot."""
        self.config_raw, self.gate = config_raw, gate
        self.workers = self._spawn_ready()
        self._watcher = gevent.spawn(self._watch)

    def _spawn_ready(self) -> list[Worker]:
        workers = [self._spawn() for _ in range(self.count)]
        try:
            for worker in workers:
                worker.wait_ready()
        except WorkerFailed:
            for worker in workers:
                worker.terminate()
            raise
        return workers

    def _spawn(self) -> Worker:
        worker = Worker(self.command, self.listener, self.config_raw, self.gate)
        log.info("started worker %d", worker.pid)
        return worker

    def _watch(self) -> None:
        backoff = 0.0
        while not self._stopping:
            for i, worker in enumerate(self.workers):
                if worker.alive or self._stopping:
                    continue
                crashed = time.monotonic() - worker.started < QUICK_EXIT
                backoff = min(MAX_BACKOFF, backoff * 2 or 1.0) if crashed else 0.0
                log.info("worker %d exited with %s, starting another%s", worker.pid,
                         worker.proc.returncode, f" in {backoff:g}s" if backoff else "")
                gevent.sleep(backoff)
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
        self.workers = self._spawn_ready()
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
