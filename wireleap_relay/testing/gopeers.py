"""The real Go Wireleap peers (../shared/peers: the `wireleap` client with its SOCKS5
forwarder, and the Go `wireleap-relay`), each run from a copy in a fresh folder, because
a Go binary's home is the folder it lives in.

    client = GoClient(peers, folder, hops=1, whitelist=[relay.address]).start()
    client.import_accesskeys(path)
    client.socks_start()
    ... curl --socks5-hostname client.socks_address ...
    client.stop()
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

import requests

from wireleap_relay import identity, pidfile
from wireleap_relay.home import Home
from wireleap_relay.testing.relayproc import RelayHome, free_port, write_config

CLIENT_BINARY = "wireleap"
RELAY_BINARY = "wireleap-relay"
# Without network usage tracking the Go relay 0.6.x panics at the end of every stream.
GO_NETWORK_USAGE = {"timeframe": "30d", "write_interval": "1m"}


def copy_binary(peers: str, name: str, folder: str) -> str:
    """A private copy of peer binary `name` in `folder` (created); its path."""
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, name)
    shutil.copy(os.path.join(peers, name), target)
    os.chmod(target, 0o755)
    return target


def read_text(path: str) -> str:
    """A log file's text so far; empty before the process has written one."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout}s")
        time.sleep(0.05)


def _terminate(proc: subprocess.Popen | None, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class GoClient:
    """The Go `wireleap` controller (`start --fg`) and its SOCKS5 forwarder, in `home`."""

    peers: str
    home: str
    hops: int = 1
    whitelist: list[str] = field(default_factory=list)
    controller: str = ""  # host:port, picked at start
    socks_address: str = ""
    proc: subprocess.Popen | None = None

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """`./wireleap ARGS` in the client's home."""
        return subprocess.run([f"./{CLIENT_BINARY}", *args], cwd=self.home, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, timeout: float = 20) -> "GoClient":
        copy_binary(self.peers, CLIENT_BINARY, self.home)
        init = self.run("init")
        if init.returncode != 0:
            raise RuntimeError(f"wireleap init failed: {init.stdout}{init.stderr}")
        self.controller = f"127.0.0.1:{free_port()}"
        self.socks_address = f"127.0.0.1:{free_port()}"
        with open(self.config_path) as f:
            config = json.load(f)
        config["address"] = self.controller
        config["broker"]["address"] = self.controller
        config["broker"]["circuit"]["hops"] = self.hops
        config["broker"]["circuit"]["whitelist"] = list(self.whitelist)
        config["forwarders"]["socks"]["address"] = self.socks_address
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=4)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([f"./{CLIENT_BINARY}", "start", "--fg"], cwd=self.home,
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        _wait(lambda: self.proc.poll() is not None or _port_open(self.controller), timeout,
              "the Go client's controller is not listening")
        if self.proc.poll() is not None:
            raise RuntimeError(f"wireleap exited with {self.proc.returncode}:\n"
                               f"{self.log_text()[-3000:]}")
        return self

    @property
    def config_path(self) -> str:
        return os.path.join(self.home, "config.json")

    @property
    def log_path(self) -> str:
        return os.path.join(self.home, "controller.log")

    def log_text(self) -> str:
        return read_text(self.log_path)

    def socks_log_text(self) -> str:
        return read_text(os.path.join(self.home, "wireleap_socks.log"))

    def import_accesskeys(self, path: str) -> None:
        done = self.run("accesskeys", "import", "file://" + os.path.abspath(path))
        if done.returncode != 0:
            raise RuntimeError(f"accesskeys import failed: {done.stdout}{done.stderr}")

    def socks_start(self, timeout: float = 20) -> None:
        done = self.run("socks", "start")
        if done.returncode != 0:
            raise RuntimeError(f"socks start failed: {done.stdout}{done.stderr}")
        _wait(lambda: _port_open(self.socks_address), timeout,
              "the Go client's SOCKS forwarder is not listening")

    def configure(self, key: str, value: object) -> None:
        """`wireleap config KEY VALUE` on the running controller, which saves config.json and
        reloads (a list is given as one argument per item)."""
        items = [str(v) for v in value] if isinstance(value, list) else [json.dumps(value)]
        done = self.run("config", key, *items)
        if done.returncode != 0:
            raise RuntimeError(f"wireleap config {key} failed: {done.stdout}{done.stderr}")

    def reload(self) -> None:
        """Re-read the config and the relay list; the circuit is built anew."""
        done = self.run("reload")
        if done.returncode != 0:
            raise RuntimeError(f"wireleap reload failed: {done.stdout}{done.stderr}")

    def circuit(self, hops: int, whitelist: list[str]) -> None:
        """Use exactly these relays (one per role) from the next connection on."""
        self.configure("broker.circuit.hops", hops)
        self.configure("broker.circuit.whitelist", whitelist)

    def _socks_pid(self) -> int | None:
        try:
            with open(os.path.join(self.home, "wireleap_socks.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """The forwarder, then the controller; signals only the processes this client
        started (the forwarder is the controller's child, by the pid file it wrote)."""
        socks_pid = self._socks_pid()
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.run("socks", "stop", timeout=15)
            except subprocess.TimeoutExpired:
                pass
        _terminate(self.proc, timeout=10)
        if socks_pid is not None and pidfile.alive(socks_pid):
            os.kill(socks_pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while pidfile.alive(socks_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pidfile.alive(socks_pid):
                os.kill(socks_pid, signal.SIGKILL)


def make_go_relay_home(peers: str, root: str, name: str, contract_url: str, role: str,
                       port: int | None = None, **settings: object) -> RelayHome:
    """A Go relay home: a copy of the binary, `wireleap-relay init` (its own identity and
    certificate), and a config.json for one contract with network usage tracking on and
    loopback allowed (everything here is on 127.0.0.1)."""
    folder = os.path.join(root, name)
    copy_binary(peers, RELAY_BINARY, folder)
    init = subprocess.run([f"./{RELAY_BINARY}", "init"], cwd=folder, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    if init.returncode != 0:
        raise RuntimeError(f"wireleap-relay init failed: {init.stdout}{init.stderr}")
    home = Home(folder)
    relay = RelayHome(home, port or free_port(), role, identity.load(home).public_key)
    write_config(relay, contract_url, **{"network_usage": dict(GO_NETWORK_USAGE), **settings})
    return relay


@dataclass
class GoRelayProcess:
    """The Go relay's `start --fg` in its home; ready once its directory lists it."""

    relay: RelayHome
    directory_url: str  # the contract's directory, e.g. http://127.0.0.1:P/dir
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> str:
        return self.relay.home.path("fg.log")

    def log_text(self) -> str:
        return read_text(self.log_path)

    def enrolled(self) -> bool:
        try:
            listed = requests.get(self.directory_url + "/relays", timeout=5).json()
        except (requests.RequestException, ValueError):
            return False
        return self.relay.address in listed

    def start(self, timeout: float = 20) -> "GoRelayProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([f"./{RELAY_BINARY}", "start", "--fg"],
                                     cwd=self.relay.home.root, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        _wait(lambda: self.proc.poll() is not None or self.enrolled(), timeout,
              f"the Go relay {self.relay.home.root} is not enrolled")
        if self.proc.poll() is not None:
            raise RuntimeError(f"Go relay exited with {self.proc.returncode}:\n"
                               f"{self.log_text()[-3000:]}")
        return self

    def stop(self, timeout: float = 15) -> None:
        _terminate(self.proc, timeout)
