"""Workers forked from a preloaded process, so that they share its memory.

Each CPython process costs about 34 MiB, most of it the same imported code and data; a
child forked after the imports shares those pages with its parent until one of them
writes there (copy-on-write), and `gc.freeze()` keeps the collector from writing to them.
The master cannot fork its workers itself: it runs a gevent hub whose greenlets
(heartbeats, status API, signal handlers) a child would inherit and run. So the master
forks a *fork server* first thing, before it has a hub, a thread or a connection: a plain
blocking loop that holds everything the master imported and forks a worker on request
(Python's multiprocessing `forkserver` and Android's zygote work the same way). Workers
therefore run the code the master runs: a new binary takes a restart, not a reload.

Master and fork server talk over a SOCK_SEQPACKET socket pair, one JSON message per
packet. The master sends `{"set": {...}, "unset": [...], "fds": [...]}` (the worker's
environment as changes to the one both had at the fork, so that a packet stays small)
with the worker's stdin and the descriptors named in `fds` attached (SCM_RIGHTS). The
fork server answers `{"spawned": pid}` with a pidfd of the worker attached (opened before
the worker could have been reaped, so the master never signals a bare, maybe reused pid),
or `{"failed": reason, "errno": n}`; and `{"exited": pid, "status": code}` once it has
reaped a worker, `code` as subprocess's `returncode` (negative: killed by a signal).
Should the fork server itself die, the master still sees its orphans leave through their
pidfds (with an unknown status) and starts its next workers with Popen.
"""

import _socket
import errno
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable

import gevent
import gevent.event
import gevent.lock
import gevent.socket
from gevent import monkey
from gevent._hub_local import get_hub_if_exists

from wireleap_relay import libc, rlimits
from wireleap_relay.fsutil import close_quietly

log = logging.getLogger(__name__)

PACKET = 65536
MAX_FDS = 8
PROCESS_NAME = b"wireleap-fork"  # /proc/<pid>/comm, what `ps -o comm` and top show
SPAWN_TIMEOUT = 30.0
CLOSE_TIMEOUT = 5.0
# The fork server leaves when the master does, no sooner; a worker gets the stop signals
# back (it handles them) and keeps ignoring those only the master handles.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)
MASTER_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


class ForkServerGone(OSError):
    """The fork server is gone and never saw this request: start the worker another way,
    with the same descriptors."""


class ForkServerLost(OSError):
    """The fork server was lost with this request in flight: a half-started worker may
    hold its descriptors. Close them (such a worker then stops) and start over."""


class ForkedProcess:
    """A worker forked by the fork server, followed through its pidfd, with the part of
    `subprocess.Popen`'s interface the supervisor uses. `returncode` stays None if the
    worker left after its fork server, whose report was the only way to learn it."""

    def __init__(self, pid: int, pidfd: int):
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._exited = gevent.event.Event()

    def running(self) -> bool:
        return not self._exited.is_set()

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
        return self.returncode

    def kill(self) -> None:
        if self._exited.is_set():
            return
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass  # exited; its report is on the way

    def exited(self, returncode: int | None) -> None:
        self.returncode = returncode
        self._exited.set()
        os.close(self._pidfd)

    def orphaned(self) -> None:
        """Its fork server is gone: only the pidfd can still tell when it leaves."""
        def follow() -> None:
            gevent.socket.wait_read(self._pidfd)
            self.exited(None)

        gevent.spawn(follow)


class ForkServer:
    """The master's side: `start` it before anything else, then `spawn` workers."""

    def __init__(self, sock: socket.socket, pid: int, pidfd: int, environ: dict[str, str]):
        self.pid = pid
        self._pidfd = pidfd  # our child's: its pid cannot be reused before we reap it
        self._environ = environ  # the fork server's, which each of its workers starts with
        self._sock = sock
        self._lock = gevent.lock.Semaphore()  # one request, one answer at a time
        self._answer: gevent.event.AsyncResult | None = None
        self._processes: dict[int, ForkedProcess] = {}
        self.alive = True
        self._closed = False
        self._reader = gevent.spawn(self._read)

    @classmethod
    def start(cls, target: Callable[[], int]) -> "ForkServer | None":
        """Fork the server, whose children run `target` and exit with what it returns.
        None, with a log line, if there can be none here (workers are then exec'd)."""
        if get_hub_if_exists() is not None:
            log.info("no fork server: the process already runs a gevent hub")
            return None
        try:
            os.close(os.pidfd_open(os.getpid()))
        except (OSError, AttributeError):
            log.info("no fork server: this system has no pidfds (Linux 5.3 and later)")
            return None
        ours, theirs = _socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = monkey.get_original("os", "fork")()
        except OSError as exc:
            ours.close()
            theirs.close()
            log.info("no fork server: %s", exc)
            return None
        if pid == 0:
            ours.close()
            _run(theirs, target)
        theirs.close()
        return cls(gevent.socket.socket(fileno=ours.detach()), pid, os.pidfd_open(pid),
                   dict(os.environ))

    def spawn(self, stdin: int, fds: dict[str, int], env: dict[str, str]) -> ForkedProcess:
        """A worker with `stdin` as its fd 0 and each of `fds` under the number its
        environment variable says, in environment `env`. ForkServerGone or ForkServerLost
        if the fork server is no more; another OSError if it could not fork."""
        with self._lock:
            if not self.alive:
                raise ForkServerGone(errno.ESRCH, "the fork server has exited")
            self._answer = gevent.event.AsyncResult()
            message = json.dumps({
                "set": {name: value for name, value in env.items()
                        if self._environ.get(name) != value},
                "unset": [name for name in self._environ if name not in env],
                "fds": list(fds)}).encode()
            try:  # a packet is sent whole or not at all: if not, it has nothing
                socket.send_fds(self._sock, [message], [stdin, *fds.values()])
            except (BrokenPipeError, ConnectionResetError) as exc:
                self._lose(f"could not reach it: {exc}")
                raise ForkServerGone(exc.errno, f"the fork server is gone: {exc}") from None
            try:
                return self._answer.get(timeout=SPAWN_TIMEOUT)
            except gevent.Timeout:
                self._lose(f"it did not answer within {SPAWN_TIMEOUT:g}s")
                raise ForkServerLost(errno.ETIMEDOUT, "the fork server did not answer") \
                    from None

    def close(self) -> None:
        """Our end: the fork server exits and is reaped; workers it forked run on."""
        if self._closed:
            return
        self._closed = True
        if gevent.getcurrent() is not self._reader:
            self._reader.kill()
        self._sock.close()
        self._gone()
        self._reap()

    def _lose(self, why: str) -> None:
        """Give up on a fork server that still runs: kill it, so that it cannot go on to
        fork a request we no longer wait for."""
        log.info("the fork server %d is killed: %s; workers are started as processes of "
                 "their own from now on", self.pid, why)
        self._kill()
        self.close()

    def _kill(self) -> None:
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        """Wait for our fork server to exit, killing it if it lingers, and reap it."""
        exited = False
        with gevent.Timeout(CLOSE_TIMEOUT, False):
            gevent.socket.wait_read(self._pidfd)
            exited = True
        if not exited:
            self._kill()
            gevent.socket.wait_read(self._pidfd)
        try:
            os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            pass  # gevent's child watcher, if one runs, reaped it first
        os.close(self._pidfd)

    def _read(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._sock, PACKET, 1)
            except OSError:
                data, fds = b"", []
            if not data:
                log.info("the fork server %d has exited; workers are started as processes "
                         "of their own from now on", self.pid)
                self.close()
                return
            self._take(json.loads(data), fds)

    def _take(self, message: dict, fds: list[int]) -> None:
        if "spawned" in message:
            pid = message["spawned"]
            process = self._processes[pid] = ForkedProcess(pid, fds[0])
            self._answer.set(process)
        elif "failed" in message:
            self._answer.set_exception(OSError(message["errno"], message["failed"]))
        elif "exited" in message:
            process = self._processes.pop(message["exited"], None)
            if process is not None:
                process.exited(message["status"])

    def _gone(self) -> None:
        if not self.alive:
            return
        self.alive = False
        if self._answer is not None and not self._answer.ready():
            self._answer.set_exception(
                ForkServerLost(errno.ESRCH, "the fork server exited while starting a worker"))
        for process in self._processes.values():
            process.orphaned()
        self._processes.clear()


# The fork server's side. It imports nothing new and never touches gevent: the hub a
# worker runs is created in that worker, after the fork. Everything here blocks.

def _run(sock: _socket.socket, target: Callable[[], int]) -> None:
    """The fork server's life; it never returns into the master's code it was forked
    from."""
    code = 1
    try:
        code = _serve(sock, target)
    except BaseException:  # noqa: BLE001 - its last word before os._exit
        traceback.print_exc()
    finally:
        os._exit(code)


def _serve(sock: _socket.socket, target: Callable[[], int]) -> int:
    original_signal = monkey.get_original("signal", "signal")
    for signum in STOP_SIGNALS + MASTER_SIGNALS:
        original_signal(signum, signal.SIG_IGN)
    libc.name_process(PROCESS_NAME)
    rlimits.raise_open_files()  # before the master does: its workers need it most
    keep = {sock.fileno(), 0, 1, 2}
    for fd in _open_fds():  # e.g. a listener handed over to the master: not ours to hold
        if fd not in keep:
            close_quietly(fd)
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    original_signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_write)
    gc.freeze()  # what the master imported stays shared: the collector leaves it alone
    poller = monkey.get_original("select", "poll")()
    poller.register(sock.fileno(), monkey.get_original("select", "POLLIN"))
    poller.register(wake_read, monkey.get_original("select", "POLLIN"))
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if wake_read in ready:
            _drain(wake_read)
            if not _reap(sock):
                return 0
        if sock.fileno() in ready:
            try:
                message, fds, flags, _ = socket.recv_fds(sock, PACKET, MAX_FDS)
            except OSError:
                message, fds, flags = b"", [], 0
            if not message:
                return 0  # the master is gone
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                answered = _send(sock, {"failed": "request too large",
                                        "errno": errno.EMSGSIZE})
            else:
                answered = _fork_worker(sock, json.loads(message), fds, target,
                                        (wake_read, wake_write))
            for fd in fds:
                close_quietly(fd)
            if not answered or not _reap(sock):  # one that exited at once: reaped here
                return 0  # the master is gone


def _fork_worker(sock: _socket.socket, request: dict, fds: list[int],
                 target: Callable[[], int], wake: tuple[int, int]) -> bool:
    """Fork a worker running `target` and answer the master; False if it is gone."""
    try:
        pid = monkey.get_original("os", "fork")()
    except OSError as exc:
        return _send(sock, {"failed": str(exc), "errno": exc.errno})
    if pid == 0:
        _become_worker(sock, request, fds, target, wake)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:  # out of fds: a worker the master cannot follow must not run
        os.kill(pid, signal.SIGKILL)
        monkey.get_original("os", "waitpid")(pid, 0)
        return _send(sock, {"failed": f"cannot follow the worker: {exc}", "errno": exc.errno})
    try:
        return _send(sock, {"spawned": pid}, pidfd)
    finally:
        os.close(pidfd)


def _become_worker(sock: _socket.socket, request: dict, fds: list[int],
                   target: Callable[[], int], wake: tuple[int, int]) -> None:
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        original_signal = monkey.get_original("signal", "signal")
        for signum in (signal.SIGCHLD, *STOP_SIGNALS):
            original_signal(signum, signal.SIG_DFL)
        for fd in (sock.fileno(), *wake):
            close_quietly(fd)
        stdin, *named = fds
        os.dup2(stdin, 0)
        close_quietly(stdin)
        for name in request["unset"]:
            os.environ.pop(name, None)
        os.environ.update(request["set"])
        os.environ.update({name: str(fd)
                           for name, fd in zip(request["fds"], named, strict=True)})
        returned = target()
        code = returned if isinstance(returned, int) else 1
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the worker's last word before os._exit
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reap(sock: _socket.socket) -> bool:
    """Report each worker that has exited; False if the master is gone."""
    while True:
        try:
            pid, status = monkey.get_original("os", "waitpid")(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return True
        if not _send(sock, {"exited": pid, "status": os.waitstatus_to_exitcode(status)}):
            return False


def _send(sock: _socket.socket, message: dict, fd: int = -1) -> bool:
    data = json.dumps(message).encode()
    try:
        if fd >= 0:
            socket.send_fds(sock, [data], [fd])
        else:
            sock.send(data)
    except OSError:
        return False
    return True


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _open_fds() -> list[int]:
    return [int(name) for name in os.listdir("/proc/self/fd")]
