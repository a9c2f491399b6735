"""The relay process in the foreground (`start --fg`): load everything, listen, enroll,
serve, send heartbeats and submit sharetokens, and stop cleanly on SIGTERM or SIGINT."""

import logging
import os
import resource
import signal

import gevent
import gevent.event

from wireleap_relay import config, duration, identity, pidfile
from wireleap_relay.contract.client import SignedClient
from wireleap_relay.contract.manager import (
    HEARTBEAT_INTERVAL,
    ContractManager,
    EnrollmentFailed,
    upgrade_notice_logger,
)
from wireleap_relay.home import Home
from wireleap_relay.relay import dialer, tls, tunnel
from wireleap_relay.relay.server import RelayServer, listen
from wireleap_relay.tokens.store import TokenStore
from wireleap_relay.tokens.submitter import Submitter

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds running streams get to finish on a graceful stop
# Test-only: Go's heartbeat interval is a fixed 5 minutes.
HEARTBEAT_ENV = "WIRELEAP_HEARTBEAT_INTERVAL"


class Fatal(Exception):
    """Start-up cannot continue; the message is the one line the operator sees."""


def build_context(home: Home, cfg: config.Config, ident: identity.Identity,
                  contracts: tunnel.ContractGate) -> tunnel.RelayContext:
    return tunnel.RelayContext(
        identity=ident,
        contracts=contracts,
        store=TokenStore(home.sharetokens),
        policy=dialer.DialPolicy(allow_loopback=cfg.allow_loopback,
                                 timeout=duration.seconds(cfg.timeout)),
        bufsize=cfg.bufsize,
        maxtime=duration.seconds(cfg.maxtime),
    )


def run_foreground(home: Home) -> int:
    _refuse_second_daemon(home)
    try:
        cfg, warnings = config.load(home.config)
    except config.ConfigError as exc:
        raise Fatal("could not validate config file: " + "; ".join(exc.problems)) from exc
    for warning in warnings:
        log.info("config warning: %s", warning)
    try:
        ident = identity.load(home)
    except identity.IdentityError as exc:
        raise Fatal(str(exc)) from exc
    raise_open_files_limit()
    client = SignedClient(ident)
    manager = ContractManager(client, cfg, home.root)
    try:
        manager.load()
    except EnrollmentFailed as exc:
        raise Fatal(str(exc)) from exc
    try:
        tls_context = tls.server_context(home.tls_cert, home.tls_key)
        listener = listen(*cfg.listen_host_port)
    except OSError as exc:
        raise Fatal(f"could not listen on {cfg.address}: {exc}") from exc
    server = RelayServer(listener, tls_context, build_context(home, cfg, ident, manager))
    server.start()
    log.info("Listening for H/2 requests on https://%s", cfg.address)
    try:
        manager.enroll_all()
    except EnrollmentFailed as exc:
        server.stop(grace=0)
        raise Fatal(str(exc)) from exc
    # Written once listening and enrolled: `start` takes it as the sign the relay is up.
    pidfile.write(home.pid_file, os.getpid())
    background = [gevent.spawn(manager.run_heartbeats, _heartbeat_interval(),
                               upgrade_notice_logger(home.root, cfg.auto_upgrade))]
    if cfg.auto_submit_interval > 0:
        submitter = Submitter(TokenStore(home.sharetokens), client, lambda: manager.urls,
                              duration.seconds(cfg.auto_submit_interval),
                              home.path(cfg.archive_dir) if cfg.archive_dir else None)
        background.append(gevent.spawn(submitter.run))
        log.info("sharetoken submission every %s", duration.format(cfg.auto_submit_interval))
    signum = wait_for_stop_signal()
    log.info("handling signal %d: %s...", signum, signal.Signals(signum).name)
    log.info("gracefully shutting down...")
    server.stop_accepting()
    gevent.killall(background)
    manager.disenroll_all()
    server.stop(grace=STOP_GRACE)
    pidfile.remove(home.pid_file, os.getpid())
    return 128 + signum


def _heartbeat_interval() -> float:
    return float(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_INTERVAL))


def _refuse_second_daemon(home: Home) -> None:
    try:
        pid = pidfile.read(home.pid_file)
    except pidfile.PidFileError:
        return  # unreadable: the new daemon replaces it once it listens
    if pid is not None and pid != os.getpid() and pidfile.alive(pid):
        raise Fatal(f"wireleap-relay daemon is already running! (pid {pid})")


def wait_for_stop_signal() -> int:
    received = gevent.event.AsyncResult()
    handlers = [gevent.signal_handler(s, received.set, s)
                for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)]
    try:
        return received.get()
    finally:
        for handler in handlers:
            handler.cancel()


def raise_open_files_limit() -> None:
    """Each stream costs a socket: lift the soft limit to the hard one, as the README's
    ulimit advice intends, and say what we got."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    log.info("open files limit: soft %d (was %d), hard %d", hard, soft, hard)
