"""A worker process from its own side (forked by the fork server, or started as
`wireleap-relay worker`, for the master's `workers.Supervisor`): serve streams on the
inherited listening socket, follow the master's messages on stdin, and report on the ready
pipe until told to stop or orphaned.
"""

import gc
import json
import os
import signal
import socket
import sys
import time

import gevent
import gevent.event
from gevent.fileobject import FileObjectPosix

from wireleap_relay import config, duration, identity, libc, logsetup
from wireleap_relay.bounds import STOP_GRACE
from wireleap_relay.contract.gate import Gate, GateState
from wireleap_relay.home import Home
from wireleap_relay.relay import dialer, selfstats, tls, tunnel
from wireleap_relay.relay.server import RelayServer
from wireleap_relay.reports import Meter
from wireleap_relay.tokens.commit import GroupCommit
from wireleap_relay.tokens.store import TokenStore
from wireleap_relay.workers import BEAT, LISTEN_FD_ENV, READY_FD_ENV

# Signals that the master handles; a worker is replaced instead of reloaded.
MASTER_SIGNALS = (signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR2)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
PROCESS_NAME = b"wireleap-worker"  # what `ps -o comm` shows (forked workers share a cmdline)
LAST_REPORT_WAIT = 5.0
TRIM_CHECK = 1.0  # seconds between looks for an idle worker that has memory to give back


def build_context(home: Home, cfg: config.Config, ident: identity.Identity,
                  contracts: tunnel.ContractGate, meter: Meter) -> tunnel.RelayContext:
    return tunnel.RelayContext(
        identity=ident,
        contracts=contracts,
        tokens=GroupCommit(TokenStore(home.sharetokens)),
        policy=dialer.DialPolicy(allow_loopback=cfg.allow_loopback,
                                 timeout=duration.seconds(cfg.timeout),
                                 refuse_private=cfg.refuse_private_addresses),
        bufsize=cfg.bufsize,
        maxtime=duration.seconds(cfg.maxtime),
        meter=meter,
    )


def run(home: Home) -> int:
    logsetup.configure(tag=f"worker {os.getpid()}: ")
    libc.name_process(PROCESS_NAME)
    for signum in MASTER_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    stdin = FileObjectPosix(sys.stdin.fileno(), "rb")
    cfg, _ = config.parse(json.loads(stdin.readline())["config"].encode(), home.config)
    gate = Gate()
    meter = Meter()
    listener = socket.socket(fileno=int(os.environ[LISTEN_FD_ENV]))
    server = RelayServer(listener, tls.server_context(home.tls_cert, home.tls_key),
                         build_context(home, cfg, identity.load(home), gate, meter),
                         max_connections=cfg.max_connections)
    server.start()
    selfstats.start(lambda: {"connections": len(server.connections),
                             "tunnels": len(server.tunnels)})
    reporter = Reporter(int(os.environ.pop(READY_FD_ENV)), meter)
    beats = gevent.spawn(reporter.run)
    gevent.spawn(_give_back_memory, meter)
    stop = gevent.event.Event()
    grace = [STOP_GRACE]  # a signal from outside: the stop grace
    for signum in STOP_SIGNALS:
        gevent.signal_handler(signum, stop.set)

    def follow_master() -> None:
        for line in stdin:
            message = json.loads(line)
            if "gate" in message:
                gate.state = GateState.from_json(message["gate"])
            if "stop" in message:  # the master's own grace: a hand-over or reload is longer
                grace[0] = float(message["stop"])
                break
        stop.set()  # told to, or stdin closed: the master is gone

    gevent.spawn(follow_master)
    stop.wait()
    server.stop(grace=grace[0])
    beats.kill()
    reporter.last()
    return 0


def _give_back_memory(meter: Meter) -> None:
    """Once the streams of a busy spell have all ended, hand the memory they freed back to
    the system: CPython's and glibc's allocators keep it for reuse otherwise, and one burst
    would set the worker's size for good."""
    ended = 0
    while True:
        gevent.sleep(TRIM_CHECK)
        total = sum(meter.streams.values())
        if meter.active_streams or total == ended:
            continue
        ended = total
        gc.collect()
        trim = libc.function("malloc_trim")
        if trim is not None:
            trim(0)


class Reporter:
    """Heartbeats on the ready pipe, each one the meter's report line: the first says the
    worker serves, later ones that its loop still runs and what it relayed. Never blocks:
    a master that does not read (yet) costs nothing, and a line cut short by a full pipe
    is finished before a newer one starts."""

    def __init__(self, fd: int, meter: Meter):
        self.fd = fd
        self.meter = meter
        self._unsent = b""
        os.set_blocking(fd, False)

    def run(self) -> None:
        while self.beat():
            gevent.sleep(BEAT)

    def beat(self) -> bool:
        """Write (the rest of) a report; False once the master closed its end."""
        if not self._unsent:
            self._unsent = self.meter.report()
        return self._write_some()

    def last(self) -> None:
        """The final counts, after the streams drained. The master reads them once this
        process has exited, so they wait in the pipe; a master that reads nothing at all
        gets LAST_REPORT_WAIT seconds, then the worker leaves without them."""
        self._unsent += self.meter.report()
        deadline = time.monotonic() + LAST_REPORT_WAIT
        while self._unsent and self._write_some() and time.monotonic() < deadline:
            gevent.sleep(0.05)

    def _write_some(self) -> bool:
        try:
            written = os.write(self.fd, self._unsent)
        except BlockingIOError:
            return True
        except OSError:
            return False  # the master is gone; nobody is left to count for
        self._unsent = self._unsent[written:]
        return True
