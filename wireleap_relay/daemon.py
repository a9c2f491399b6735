"""The relay daemon (`start --fg`): a master process that owns the listening socket, the
pid file, the signals and the control plane (enrollment, heartbeats, submission), and
worker processes that serve the streams (`workers.py`).

Signals to the master: SIGTERM, SIGINT, SIGQUIT stop it gracefully; SIGUSR1 (what `reload`
sends, as the Go relay does) and SIGHUP reload config.json. A broken config is refused and
the running one kept. SIGUSR2 hands over to a new master (`restart`, upgrades): the new
process inherits the listening socket, so no connection is refused, and the old workers
finish their running streams while the new ones take the new connections.
"""

import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable

import gevent
import gevent.event
import gevent.queue

from wireleap_relay import config, duration, identity, pidfile, rlimits, sdnotify
from wireleap_relay.bounds import HANDOVER_FAILED, STOP_GRACE
from wireleap_relay.contract.client import SignedClient
from wireleap_relay.contract.gate import GateState
from wireleap_relay.contract.manager import (
    HEARTBEAT_INTERVAL,
    ContractManager,
    EnrollmentFailed,
    upgrade_notice_logger,
)
from wireleap_relay.forkserver import ForkServer
from wireleap_relay.fsutil import write_atomic
from wireleap_relay.home import BINARY_NAME, Home
from wireleap_relay.relay import selfstats, tls
from wireleap_relay.relay.server import listen
from wireleap_relay.restapi import routes
from wireleap_relay.restapi.service import RestApi
from wireleap_relay.restapi.status import status_document
from wireleap_relay.selfexec import own_command
from wireleap_relay.tokens.counts import TokenCounts
from wireleap_relay.tokens.store import TokenStore
from wireleap_relay.tokens.submitter import Submitter
from wireleap_relay.upgrade import unpacked
from wireleap_relay.upgrade.auto import NoticeHandler
from wireleap_relay.usage import tracker as usage_tracker
from wireleap_relay.version import software_version
from wireleap_relay.worker import STOP_SIGNALS
from wireleap_relay.workers import Launcher, Supervisor, WorkerFailed

log = logging.getLogger(__name__)

# Test-only: Go's heartbeat interval is a fixed 5 minutes.
HEARTBEAT_ENV = "WIRELEAP_HEARTBEAT_INTERVAL"
RELOAD_SIGNALS = (signal.SIGUSR1, signal.SIGHUP)
HANDOVER_SIGNAL = signal.SIGUSR2
# What a master tells the master it starts in a hand-over: the socket, and that the pid file
# names a live master on purpose.
HANDOVER_FD_ENV = "WIRELEAP_HANDOVER_FD"
HANDOVER_FROM_ENV = "WIRELEAP_HANDOVER_FROM"
HANDOVER_TIMEOUT = 90.0
HANDOVER_GRACE = 60.0  # how long old workers may finish their streams: hand-over, reload


class Fatal(Exception):
    """Start-up cannot continue; the message is the one line the operator sees."""


def load_config(home: Home) -> tuple[bytes, config.Config]:
    """The config file's bytes (what workers get) and its validated model."""
    try:
        with open(home.config, "rb") as f:
            raw = f.read()
        cfg, warnings = config.parse(raw, home.config)
    except OSError as exc:
        raise config.ConfigError([f"{home.config}: cannot read: {exc.strerror}"]) from exc
    for warning in warnings:
        log.info("config warning: %s", warning)
    return raw, cfg


class Master:
    def __init__(self, home: Home, forks: ForkServer | None = None):
        self.home = home
        self.forks = forks
        self.signals: gevent.queue.Queue = gevent.queue.Queue()
        for signum in STOP_SIGNALS + RELOAD_SIGNALS + (HANDOVER_SIGNAL,):
            gevent.signal_handler(signum, self.signals.put, signum)
        try:
            self.raw, self.cfg = load_config(home)
        except config.ConfigError as exc:
            raise Fatal("could not validate config file: " + "; ".join(exc.problems)) from exc
        try:
            self.ident = identity.load(home)
        except identity.IdentityError as exc:
            raise Fatal(str(exc)) from exc
        self.client = SignedClient(self.ident)
        self.manager = ContractManager(self.client, self.cfg, home.root)
        # Network usage and caps; the status API reads it (status_json, contract_json).
        self.usage = usage_tracker.for_config(self.cfg, home, self.manager,
                                              self.ident.public_key_b64)
        self.usage_loop: gevent.Greenlet | None = None
        self.background: list[gevent.Greenlet] = []
        self.reloads = 0
        self.started_at = time.time()
        self.supervisor: Supervisor | None = None
        self.tokens = TokenCounts(lambda: self.supervisor.tally.totals().sharetokens
                                  if self.supervisor else 0)
        self.upgrades: NoticeHandler | None = None
        self.api = RestApi(routes.handler(self.status, self.metrics))
        self._metrics: Callable[[], tuple[bytes, str]] | None = None

    def metrics(self) -> tuple[bytes, str]:
        """The /metrics exposition. prometheus_client is imported at the first scrape: it
        would cost every master about 10 MiB, and most run without the API."""
        if self._metrics is None:
            from wireleap_relay.metrics import RelayMetrics

            self._metrics = RelayMetrics(self).exposition
        return self._metrics()

    def status(self) -> dict:
        """The status API's document (control.md §6.2)."""
        return status_document(self.manager.started, self.manager.contracts.values(),
                               self.usage)

    def run(self) -> int:
        try:
            return self._run()
        finally:
            self.api.close()  # after a hand-over, already closed without removing the file

    def _run(self) -> int:
        log.info("%s", self.banner())
        was, now = rlimits.raise_open_files()  # the fork server raised its own
        log.info("open files limit: soft %d (was %d), hard %d", now, was, now)
        try:
            self.manager.load()
            tls.server_context(self.home.tls_cert, self.home.tls_key)  # fail here, not N times
        except EnrollmentFailed as exc:
            raise Fatal(str(exc)) from exc
        except OSError as exc:
            raise Fatal(f"could not load the TLS certificate: {exc}") from exc
        inherited = _inherited_listener()
        try:
            listener = inherited or listen(*self.cfg.listen_host_port)
        except OSError as exc:
            raise Fatal(f"could not listen on {self.cfg.address}: {exc}") from exc
        listener.set_inheritable(True)
        if inherited is None:  # in a hand-over the old master holds it: bound below
            try:
                self.api.listen(self.cfg.rest_api_endpoint)
            except OSError as exc:
                raise Fatal(f"could not listen on rest_api.address "
                            f"{self.cfg.rest_api_endpoint}: {exc}") from exc
        try:
            self.usage.start()  # contracts over a cap are not enrolled
        except OSError as exc:
            raise Fatal(f"could not load the network usage in {self.home.stats}: {exc}") \
                from exc
        try:
            self.manager.enroll_all()
        except EnrollmentFailed as exc:
            raise Fatal(str(exc)) from exc
        # Workers start once enrolled: until then connections wait in the listen queue
        # instead of meeting "controller not started" (or, in a hand-over, the old master's
        # workers keep serving them).
        supervisor = self.supervisor = Supervisor(Launcher(own_command(), self.forks),
                                                  listener, self.cfg.worker_count)
        self.usage.follow(supervisor.tally)
        try:
            supervisor.start(self.raw, self.manager.gate_state())
        except WorkerFailed as exc:
            self.manager.disenroll_all()
            raise Fatal(f"{exc}: see the lines above") from exc
        log.info("Listening for H/2 requests on https://%s with %d workers", self.cfg.address,
                 self.cfg.worker_count)
        # systemd first: whoever waits for the pid file (`start`, the master handing over to
        # us) may exit as soon as it appears, and systemd must know its successor by then.
        sdnotify.ready(self.serving())
        # Written once listening and enrolled: `start` takes it as the sign the relay is up.
        pidfile.write(self.home.pid_file, os.getpid())
        if inherited is not None:  # the old master lets go of it once it sees the pid file
            self.api.listen_when_free(self.cfg.rest_api_endpoint, HANDOVER_TIMEOUT)
        unpacked.prune(self.home)
        self._start_background(supervisor)
        selfstats.start()
        # Not among `background`, which a reload restarts: the period and caps run on.
        self.usage_loop = gevent.spawn(self.usage.run, lambda: supervisor.broadcast(
            self.manager.gate_state()))
        while True:
            signum = self.signals.get()
            log.info("handling signal %d: %s...", signum, signal.Signals(signum).name)
            if signum in RELOAD_SIGNALS:
                sdnotify.reloading()
                done, message = self.reload(supervisor)
                sdnotify.ready(self.serving() if done else message)
                self._answer_reload(done, message)
                continue
            if signum == HANDOVER_SIGNAL:
                if self.handover(listener, supervisor):
                    return 0
                continue
            return self.stop(listener, supervisor)

    def _start_background(self, supervisor: Supervisor) -> None:
        on_upgrade = self.upgrades = upgrade_notice_logger(self.home.root,
                                                           self.cfg.auto_upgrade)

        def heartbeats() -> None:
            while True:
                gevent.sleep(float(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_INTERVAL)))
                self.manager.heartbeat_all(on_upgrade)
                supervisor.broadcast(self.manager.gate_state())

        store = TokenStore(self.home.sharetokens)
        self.background = [gevent.spawn(heartbeats), gevent.spawn(self._list_tokens, store)]
        if self.cfg.auto_submit_interval > 0:
            archive = self.home.path(self.cfg.archive_dir) if self.cfg.archive_dir else None
            submitter = Submitter(store, self.client, lambda: self.manager.urls,
                                  duration.seconds(self.cfg.auto_submit_interval), archive,
                                  counts=self.tokens)
            self.background.append(gevent.spawn(submitter.run))

    def serving(self) -> str:
        """What systemd shows as the relay's status while it serves."""
        return (f"listening on {self.cfg.address} with {self.cfg.worker_count} workers, "
                f"{len(self.cfg.contracts)} contract(s)")

    def _list_tokens(self, store: TokenStore) -> None:
        """Count the pending tokens once, off the loop; the counts follow from there."""
        try:
            self.tokens.listed(len(gevent.get_hub().threadpool.apply(store.pending)))
        except OSError as exc:
            log.info("could not count the pending sharetokens: %s", exc)

    def banner(self) -> str:
        """The start line an operator looks for first in the log."""
        contracts = ", ".join(f"{url} ({entry.role})" for url, entry in
                              self.cfg.contracts.items())
        return (f"{BINARY_NAME} {software_version()} starting: pid {os.getpid()}, home "
                f"{self.home.root}, {self.cfg.worker_count} workers, listening on "
                f"{self.cfg.address}, public key {self.ident.public_key_b64}, contracts: "
                f"{contracts}")

    def reload(self, supervisor: Supervisor) -> tuple[bool, str]:
        """Re-read config.json; start workers with it, then move the contracts to it and
        retire the old workers. Anything wrong on the way (the config, a new contract's
        lookup, workers that cannot start) keeps everything as it was: directories are
        only told once the new workers serve. (done, what happened)."""
        log.info("reloading config")
        try:
            raw, cfg = load_config(self.home)
            if cfg.address != self.cfg.address:
                raise config.ConfigError([f"address: changing it ({self.cfg.address} -> "
                                          f"{cfg.address}) needs a restart"])
            change = self.manager.prepare(cfg)
            if usage_tracker.tracking(cfg) != usage_tracker.tracking(self.cfg):
                log.info("please, restart the relay to turn network usage tracking on or off")
        except config.ConfigError as exc:
            return False, _refused("could not reload config, keeping the running one: " +
                                   "; ".join(exc.problems))
        except EnrollmentFailed as exc:
            return False, _refused(f"could not reload config, keeping the running one: {exc}")
        try:
            workers = supervisor.start_replacements(raw)
        except WorkerFailed as exc:
            return False, _refused("could not start workers with the new config, keeping "
                                   f"the running one: {exc}")
        self.manager.apply(change)
        self.usage.apply(cfg)
        self.raw, self.cfg = raw, cfg
        supervisor.broadcast(self.manager.gate_state())  # the old ones drain under it too
        supervisor.replace_all(workers, raw, grace=HANDOVER_GRACE)
        gevent.killall(self.background)
        self._start_background(supervisor)
        return True, self._follow_rest_api(cfg)

    def _follow_rest_api(self, cfg: config.Config) -> str:
        """Move the status API to the reloaded address; if it cannot listen there, the
        rest of the reload stands and the API stays where it was."""
        try:
            self.api.listen(cfg.rest_api_endpoint)
        except OSError as exc:
            return _refused(f"config reloaded, but the status API stays on "
                            f"{self.api.endpoint or 'nothing'}: could not listen on "
                            f"{cfg.rest_api_endpoint}: {exc}")
        log.info("config reloaded")
        return "config reloaded"

    def _answer_reload(self, done: bool, message: str) -> None:
        """What `reload` waits for: a new answer each time (the serial changes)."""
        self.reloads += 1
        try:
            write_atomic(self.home.reload_answer, json.dumps(
                {"pid": os.getpid(), "serial": self.reloads, "done": done,
                 "message": message}).encode(), mode=0o600)
        except OSError as exc:
            log.info("could not write %s: %s", self.home.reload_answer, exc)

    def handover(self, listener: socket.socket, supervisor: Supervisor) -> bool:
        """Start a new master (this relay's executable as it is now on disk, so an upgrade
        puts the new binary in place first) on our listening socket; once it is up and
        enrolled, retire: no disenrollment (it is the same relay), old workers drain."""
        log.info("handing over to a new %s...", BINARY_NAME)
        sdnotify.status("handing over to a new process")
        env = dict(os.environ, **{HANDOVER_FD_ENV: str(listener.fileno()),
                                  HANDOVER_FROM_ENV: str(os.getpid())})
        child = subprocess.Popen(own_command() + ["start", "--fg"], env=env,
                                 pass_fds=(listener.fileno(),), stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        deadline = time.monotonic() + HANDOVER_TIMEOUT
        while pidfile.read_quietly(self.home.pid_file) != child.pid:
            if child.poll() is not None or time.monotonic() > deadline:
                child.kill()
                log.info("%s: the new process did not come up (exit %s); this one keeps "
                         "serving", HANDOVER_FAILED, child.poll())
                sdnotify.ready(self.serving())  # it may have named itself main process
                return False
            gevent.sleep(0.05)
        log.info("handed over to pid %d; finishing running streams", child.pid)
        self.api.close(remove_file=False)  # the new master binds it now
        gevent.killall(self.background + [self.usage_loop])
        supervisor.stop(grace=HANDOVER_GRACE)
        listener.close()
        self.usage.save()  # our drained streams' bytes, added to the new master's
        log.info("this master's workers %s", supervisor.tally.totals().summary())
        return True

    def stop(self, listener, supervisor: Supervisor) -> int:
        """Stop accepting, leave every directory, let running streams finish (each token
        accepted was on disk before its stream was dialed), then exit."""
        log.info("gracefully shutting down...")
        sdnotify.stopping()
        gevent.killall(self.background + [self.usage_loop])
        supervisor.broadcast(GateState())
        self.manager.disenroll_all()
        supervisor.stop(grace=STOP_GRACE)
        listener.close()
        self.usage.save()  # after the streams drained, so their last bytes count
        pidfile.remove(self.home.pid_file, os.getpid())
        log.info("stopped; the workers %s", supervisor.tally.totals().summary())
        return 0


def _refused(message: str) -> str:
    log.info("%s", message)
    return message


def run_foreground(home: Home, forks: ForkServer | None = None) -> int:
    """The master, which starts its workers through `forks` where there is one."""
    try:
        _refuse_second_daemon(home)
        return Master(home, forks).run()
    finally:
        if forks is not None:
            forks.close()


def _inherited_listener() -> socket.socket | None:
    """The socket a handing-over master passed us; taken out of the environment so that
    our own workers and hand-overs never see a stale one."""
    fd = os.environ.pop(HANDOVER_FD_ENV, None)
    os.environ.pop(HANDOVER_FROM_ENV, None)
    return socket.socket(fileno=int(fd)) if fd else None


def _refuse_second_daemon(home: Home) -> None:
    try:
        pid = pidfile.read(home.pid_file)
    except pidfile.PidFileError:
        return  # unreadable: the new daemon replaces it once it listens
    handing_over = os.environ.get(HANDOVER_FROM_ENV)
    if pid is not None and pid != os.getpid() and str(pid) != handing_over and \
            pidfile.alive(pid):
        raise Fatal(f"wireleap-relay daemon is already running! (pid {pid})")
