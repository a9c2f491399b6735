"""A whole Wireleap network on 127.0.0.1 (`make run`): the fake contract+directory, three
relays of this project (fronting, entropic, backing) in their own homes, an HTTP target,
and a SOCKS5 entry point that sends every connection through a 3-hop circuit."""

import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import gevent
import gevent.event
from gevent.pywsgi import WSGIServer

from wireleap_relay.testing.relayproc import RelayHome, RelayProcess, make_home
from wireleap_relay.testing.servicekey import Wallet
from wireleap_relay.testing.socks5 import Socks5Server
from wireleap_relay.testing.socks_entry import ROLES, SOCKS_PORT, circuit_dialer

log = logging.getLogger("devnet")

LOCK_FILE = "make-run.lock"  # in the folder: held while a `make run` uses it
CHUNK = 64 * 1024


@dataclass
class Devnet:
    contract_url: str
    relays: list[RelayHome]
    target: tuple[str, int]
    socks: tuple[str, int]


@contextmanager
def fake_contract(root: str, *extra: str) -> Iterator[str]:
    """The fake contract+directory as a subprocess; yields its URL."""
    state = os.path.join(root, "contract")
    os.makedirs(state, exist_ok=True)
    ready = os.path.join(state, "url")
    with ready_subprocess(["wireleap_relay.testing.fake_contract", "--state-dir", state,
                           "--ready-file", ready, "--quiet", *extra], ready,
                          "the fake contract", timeout=20) as url:
        yield url


@contextmanager
def ready_subprocess(module_args: list[str], ready: str, what: str,
                     timeout: float) -> Iterator[str]:
    """`python -m <module_args>` as a subprocess that writes its address to the file
    `ready` once it serves; yields that text, and stops the process at the end."""
    proc = subprocess.Popen([sys.executable, "-m", *module_args],
                            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not os.path.exists(ready):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.05)
        with open(ready) as f:
            yield f.read().strip()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bytes_app(environ: dict, start_response) -> Iterator[bytes]:
    """GET /N answers N bytes (default: a greeting); the target of the demo and benchmark."""
    path = environ.get("PATH_INFO", "/").strip("/")
    if not path.isdigit():
        body = b"Hello from the far side of a Wireleap circuit.\n"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return iter([body])
    size = int(path)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    return _zeros(size)


def _zeros(size: int) -> Iterator[bytes]:
    block = bytes(CHUNK)
    while size > 0:
        yield block[:min(size, CHUNK)]
        size -= CHUNK


@contextmanager
def running(root: str, socks_port: int = 0, relay_command: list[str] | None = None,
            fake_args: tuple[str, ...] = ()) -> Iterator[Devnet]:
    """Start everything under `root`; stop it all on exit."""
    with ExitStack() as stack:
        url = stack.enter_context(fake_contract(root, *fake_args))
        relays = []
        for role in ROLES:
            path = "/wireleap" if role == "fronting" else "/"
            home = make_home(root, role, url, role, path=path)
            proc = RelayProcess(home, command=relay_command)
            stack.callback(proc.stop)
            proc.start()
            relays.append(home)
        web = WSGIServer(("127.0.0.1", 0), bytes_app, log=None)
        web.start()
        stack.callback(web.stop)
        hops = [(r.address, r.pubkey) for r in relays]
        socks = Socks5Server(listen=("127.0.0.1", socks_port),
                             dial=circuit_dialer(hops, Wallet(url)))
        socks.start()
        stack.callback(socks.stop)
        yield Devnet(url, relays, web.address[:2], socks.address)


class FolderInUse(Exception):
    """Another `make run` holds the folder; the message names its pid."""


def claim(root: str) -> int:
    """Make `root` ours and empty it, for as long as this process lives: an flock on a file
    in it, which the kernel drops when we end, however we end (no stale lock). A second
    `make run` must not wipe the homes of relays that a first one still runs."""
    os.makedirs(root, exist_ok=True)
    lock = os.open(os.path.join(root, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(lock, 32).decode(errors="replace").strip()
        os.close(lock)
        raise FolderInUse(f"{root} is in use by another `make run` (pid {holder}): stop "
                          "that one first (Ctrl-C in its terminal)") from None
    os.ftruncate(lock, 0)
    os.write(lock, str(os.getpid()).encode())
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name == LOCK_FILE:
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    return lock


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = os.path.abspath("devnet")
    try:
        claim(root)
    except FolderInUse as exc:
        print(exc, file=sys.stderr)
        return 1
    port = SOCKS_PORT if _port_free(SOCKS_PORT) else 0
    with running(root, socks_port=port) as net:
        host, tport = net.target
        shost, sport = net.socks
        print(f"contract+directory  {net.contract_url}")
        for relay in net.relays:
            print(f"{relay.role:<10} relay    {relay.address}  (home {relay.home.root})")
        print(f"HTTP target         http://{host}:{tport}/")
        print(f"SOCKS5 entry        {shost}:{sport}  (3 hops: fronting, entropic, backing)")
        print("\nTry:\n"
              f"  curl --socks5-hostname {shost}:{sport} http://{host}:{tport}/\n"
              f"  curl --socks5-hostname {shost}:{sport} -o /dev/null "
              f"http://{host}:{tport}/104857600\n\nCtrl-C stops everything.", flush=True)
        stop = gevent.event.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            gevent.signal_handler(signum, stop.set)
        stop.wait()
        print("stopping...", flush=True)
    return 0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
