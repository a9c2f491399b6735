"""The relay process in the foreground (`start --fg`): load everything, serve, and stop
cleanly on SIGTERM or SIGINT."""

import logging
import os
import resource
import signal

import gevent
import gevent.event

from wireleap_relay import config, duration, identity, pidfile
from wireleap_relay.contract import info as contract_info
from wireleap_relay.contract.client import ControlError, SignedClient
from wireleap_relay.home import Home
from wireleap_relay.relay import dialer, tls, tunnel
from wireleap_relay.relay.server import RelayServer, listen
from wireleap_relay.tokens.store import TokenStore

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds running streams get to finish on a graceful stop


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


def load_contracts(client: SignedClient, cfg: config.Config) -> tunnel.ContractGate:
    pubkeys = {}
    for url in cfg.contracts:
        try:
            pubkeys[contract_info.fetch(client, url).pubkey] = url
        except ControlError as exc:
            raise Fatal(f"could not get pubkey for {url}: {exc}") from exc
    return tunnel.ContractGate(pubkeys)


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
    contracts = load_contracts(SignedClient(ident), cfg)
    try:
        tls_context = tls.server_context(home.tls_cert, home.tls_key)
        listener = listen(*cfg.listen_host_port)
    except OSError as exc:
        raise Fatal(f"could not listen on {cfg.address}: {exc}") from exc
    server = RelayServer(listener, tls_context, build_context(home, cfg, ident, contracts))
    server.start()
    log.info("Listening for H/2 requests on https://%s", cfg.address)
    # Written once listening: `start` takes the pid file as the sign that the relay is up.
    pidfile.write(home.pid_file, os.getpid())
    signum = wait_for_stop_signal()
    log.info("handling signal %d: %s...", signum, signal.Signals(signum).name)
    log.info("gracefully shutting down...")
    server.stop(grace=STOP_GRACE)
    pidfile.remove(home.pid_file, os.getpid())
    return 128 + signum


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

