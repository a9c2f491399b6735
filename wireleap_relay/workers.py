"""Worker processes: the data plane runs in N processes accepting on the master's
listening socket (the gunicorn model), because one Python process uses one core.

The master talks to each worker over the worker's stdin, one JSON object per line: first
the config text the master validated (so master and workers never disagree about it), then
the gate state whenever enrollment changes, and last `{"stop": grace}`: stop accepting and
let running streams finish for up to `grace` seconds. A worker whose stdin closes has lost
its master and stops. A worker writes a report line (reports.py) to its ready pipe once it
serves and then every BEAT seconds; one that goes silent is hung and replaced. The last
line, written after its streams drained, is read once it has exited. Duplicate sharetokens
are refused across workers by the token store's exclusive file creation, not by anything
shared in memory. The worker's own side is worker.py. Workers are forked by the fork
server (forkserver.py) while there is one, else started as `<this relay> worker`
(`Launcher`).
"""

import errno
import functools
import json
import logging
import os
import socket
import subprocess
import time

import gevent
import gevent.os

from wireleap_relay.bounds import STOP_GRACE
from wireleap_relay.contract.gate import GateState
from wireleap_relay.forkserver import ForkedProcess, ForkServer, ForkServerGone, ForkServerLost
from wireleap_relay.fsutil import close_quietly
from wireleap_relay.reports import ReportReader, Tally
from wireleap_relay.sdnotify import NOTIFY_SOCKET_ENV

log = logging.getLogger(__name__)

LISTEN_FD_ENV = "WIRELEAP_LISTEN_FD"
READY_FD_ENV = "WIRELEAP_READY_FD"  # a worker writes report lines here once it serves
READY_TIMEOUT = 60.0
WATCH_INTERVAL = 0.2
QUICK_EXIT = 5.0  # a worker dying this soon after its start is crashing, not unlucky
MAX_BACKOFF = 30.0
BEAT = 2.0  # a worker writes a report line (its heartbeat) this often
HUNG_AFTER_ENV = "WIRELEAP_WORKER_HUNG_AFTER"  # tests shorten it
# No heartbeat for this long: the worker's loop is stuck, kill it.
HUNG_AFTER = float(os.environ.get(HUNG_AFTER_ENV, "30"))
KILL_MARGIN = 2.0  # past its drain grace, a worker is killed


READ_SIZE = 65536


class WorkerFailed(Exception):
    pass


class ExecedProcess(subprocess.Popen):
    """A worker started as a process of its own, when there is no fork server."""

    def running(self) -> bool:
        return self.poll() is None


class Launcher:
    """How workers come to be: forked by the fork server (forkserver.py) while there is
    one, for the memory they then share; else each runs this relay's own command."""

    def __init__(self, command: list[str], forks: ForkServer | None = None):
        self.command = command
        self.forks = forks

    def launch(self, stdin: int, fds: dict[str, int],
               env: dict[str, str]) -> ForkedProcess | ExecedProcess:
        """A worker reading `stdin`, with each of `fds` named in the environment variable
        that is its key. OSError if it cannot be started; ForkServerLost if the caller
        must start over with new descriptors."""
        if self.forks is not None and self.forks.alive:
            try:
                return self.forks.spawn(stdin, fds, env)
            except ForkServerGone:
                pass  # it never saw these descriptors: exec with them
        return ExecedProcess(self.command + ["worker"], stdin=stdin,
                             pass_fds=tuple(fds.values()),
                             env=dict(env, **{name: str(fd) for name, fd in fds.items()}))


class Worker:
    def __init__(self, launcher: Launcher, listener: socket.socket, config_raw: bytes,
                 gate: GateState, tally: Tally):
        self.tally = tally
        self._reports = ReportReader()
        self.ready = False  # it has served: it may hold streams
        self._pipe = self._ready = -1
        read_end = ready_write = -1
        try:
            read_end, self._pipe = os.pipe()
            self._ready, ready_write = os.pipe()
            # Only masters speak to systemd (sdnotify.py): with NotifyAccess=all, anything a
            # worker sent there would count as the relay's own word.
            env = {name: value for name, value in os.environ.items()
                   if name != NOTIFY_SOCKET_ENV}
            self.proc = launcher.launch(read_end, {LISTEN_FD_ENV: listener.fileno(),
                                                   READY_FD_ENV: ready_write}, env)
        except OSError:  # out of fds or processes: leave nothing behind
            close_quietly(self._pipe)
            close_quietly(self._ready)
            raise
        finally:  # the worker's ends: it has its own copies, or there is no worker
            close_quietly(read_end)
            close_quietly(ready_write)
        self.started = time.monotonic()
        self.last_beat = self.started
        os.set_blocking(self._ready, False)  # read by the watcher, which must never block
        # Blocking for the first lines (the config may exceed the pipe's atomic size; the
        # worker reads it at once), then never again: a worker that stops reading must not
        # freeze the master.
        try:
            self._write({"config": config_raw.decode("utf-8")})
            self._write({"gate": gate.to_json()})
        except OSError:  # it died at once: the caller learns it when waiting for it
            pass
        os.set_blocking(self._pipe, False)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until the worker serves; WorkerFailed if it died or took too long."""
        with gevent.Timeout(timeout, WorkerFailed(f"worker {self.pid} did not start "
                                                  f"within {timeout:g}s")):
            first = gevent.os.nb_read(self._ready, READ_SIZE)
            if not first:
                self.proc.wait()
                raise WorkerFailed(f"worker {self.pid} exited while starting "
                                   f"(status {self.status})")
        self.ready = True
        self._take(first)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.running()

    @property
    def status(self) -> str:
        """How it exited, once it has."""
        code = self.proc.returncode
        return "an unknown status" if code is None else str(code)

    def hung(self) -> bool:
        """No heartbeat for HUNG_AFTER seconds: its loop is stuck (gunicorn's worker
        timeout). Reads the reports that arrived meanwhile."""
        self._read_reports()
        return time.monotonic() - self.last_beat > HUNG_AFTER

    def _read_reports(self) -> None:
        """Whatever the ready pipe holds, without blocking."""
        while self._ready >= 0:
            try:
                data = os.read(self._ready, READ_SIZE)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            self._take(data)

    def _take(self, data: bytes) -> None:
        """A heartbeat; each complete line is the worker's latest report."""
        self.last_beat = time.monotonic()
        for report in self._reports.feed(data):
            self.tally.update(self.pid, report)

    def _write(self, message: dict) -> None:
        data = (json.dumps(message) + "\n").encode()
        if os.write(self._pipe, data) < len(data):
            # A line cut short by a nearly full pipe would garble every later one.
            raise BlockingIOError(errno.EAGAIN, "message cut short")

    def send(self, message: dict) -> None:
        try:
            self._write(message)
        except BlockingIOError:
            log.info("worker %d does not read its messages, killing it", self.pid)
            self.kill()
        except OSError:
            pass  # it is gone; the supervisor notices and replaces it

    def terminate(self, grace: float) -> None:
        """Stop accepting, finish running streams for up to `grace` seconds, exit. The
        ready pipe stays open for its last report: `close` once it has exited."""
        self.send({"stop": grace})
        close_quietly(self._pipe)
        self._pipe = -1

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()

    def close(self) -> None:
        """Our ends of its pipes (its stdin closing also tells it to stop). Once it has
        exited, its last report is read first and its counts join the retired ones."""
        exited = not self.alive
        if exited:
            self._read_reports()
        for fd in (self._pipe, self._ready):
            close_quietly(fd)
        self._pipe = self._ready = -1
        if exited:
            self.tally.retire(self.pid)


class Supervisor:
    """Keeps `count` workers alive; replaces any that dies or hangs unless we are
    stopping."""

    def __init__(self, launcher: Launcher, listener: socket.socket, count: int):
        self.launcher = launcher
        self.listener = listener
        self.count = count
        self.workers: list[Worker] = []
        self.tally = Tally()  # what all our workers relayed, the retired ones included
        self.restarts = 0  # workers replaced because they died or hung
        self.config_raw = b""
        self.gate = GateState()
        self._stopping = False
        self._watcher: gevent.Greenlet | None = None

    def start(self, config_raw: bytes, gate: GateState) -> None:
        """Start the workers and wait until all serve; WorkerFailed if one cannot."""
        self.config_raw, self.gate = config_raw, gate
        self.workers = self._spawn_ready()
        self._watcher = gevent.spawn(self._watch)

    def _spawn_ready(self, config_raw: bytes | None = None) -> list[Worker]:
        """`count` workers that serve; WorkerFailed, with none of them left behind, if one
        cannot start. Those that already served may hold streams: they get to finish."""
        workers: list[Worker] = []
        try:
            for _ in range(self.count):
                workers.append(self._spawn(config_raw))
            for worker in workers:
                worker.wait_ready()
        except (WorkerFailed, OSError) as exc:
            for worker in workers:
                if worker.ready:
                    worker.terminate(STOP_GRACE)
                    gevent.spawn(_retire, worker, STOP_GRACE)
                else:
                    worker.kill()
                    worker.proc.wait()  # reaped, not left a zombie
                    worker.close()
            if isinstance(exc, OSError):
                raise WorkerFailed(f"could not start a worker: {exc}") from exc
            raise
        return workers

    def _spawn(self, config_raw: bytes | None = None) -> Worker:
        new = functools.partial(Worker, self.launcher, self.listener,
                                config_raw or self.config_raw, self.gate, self.tally)
        try:
            worker = new()
        except ForkServerLost:  # our pipes closed, a half-started worker stops: once more
            worker = new()
        log.info("started worker %d", worker.pid)
        return worker

    def _watch(self) -> None:
        backoff = 0.0
        while not self._stopping:
            for worker in list(self.workers):  # replace_all may swap the list meanwhile
                if self._stopping or (worker.alive and not worker.hung()):
                    continue
                if worker.alive:
                    log.info("worker %d sent no heartbeat for %gs, killing it", worker.pid,
                             HUNG_AFTER)
                    worker.kill()
                    worker.proc.wait()
                worker.close()
                crashed = time.monotonic() - worker.started < QUICK_EXIT
                backoff = min(MAX_BACKOFF, backoff * 2 or 1.0) if crashed else 0.0
                log.info("worker %d exited with %s, starting another%s", worker.pid,
                         worker.status, f" in {backoff:g}s" if backoff else "")
                gevent.sleep(backoff)
                if worker in self.workers and not self._stopping:
                    try:
                        self.workers[self.workers.index(worker)] = self._spawn()
                        self.restarts += 1
                    except OSError as exc:  # out of fds or processes: try again later
                        log.info("could not start a worker: %s; trying again", exc)
                        backoff = min(MAX_BACKOFF, backoff * 2 or 1.0)
            gevent.sleep(WATCH_INTERVAL)

    def broadcast(self, gate: GateState) -> None:
        self.gate = gate
        for worker in self.workers:
            worker.send({"gate": gate.to_json()})

    def start_replacements(self, config_raw: bytes) -> list[Worker]:
        """Workers with a new config, serving beside the running ones until
        `replace_all`. WorkerFailed, with none of them left running, if one cannot start:
        the running workers never knew."""
        return self._spawn_ready(config_raw)

    def replace_all(self, new: list[Worker], config_raw: bytes, grace: float) -> None:
        """The replacements take over; the old workers finish their streams (up to `grace`
        seconds) and leave: the listening socket is never without a worker."""
        old = self.workers
        self.config_raw = config_raw
        self.workers = new
        for worker in new:  # the gate may have moved since they started
            worker.send({"gate": self.gate.to_json()})
        for worker in old:
            worker.terminate(grace)
            gevent.spawn(_retire, worker, grace)

    def stop(self, grace: float) -> None:
        self._stopping = True
        for worker in self.workers:
            worker.terminate(grace)
        deadline = time.monotonic() + grace + KILL_MARGIN
        for worker in self.workers:
            _reap(worker, max(0.0, deadline - time.monotonic()))


def _retire(worker: Worker, grace: float) -> None:
    _reap(worker, grace + KILL_MARGIN)


def _reap(worker: Worker, timeout: float) -> None:
    """Wait for a draining worker, killing it if it overstays, and take its last report."""
    try:
        worker.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.info("worker %d did not finish in time, killing it", worker.pid)
        worker.proc.kill()
        worker.proc.wait()
    worker.close()
