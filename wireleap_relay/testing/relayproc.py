"""Relays as real subprocesses, each in its own home: what the integration tests, the
benchmark and `make run` start."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from wireleap_relay import identity
from wireleap_relay.home import HOME_ENV, Home


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RelayHome:
    home: Home
    port: int
    role: str
    pubkey: bytes
    path: str = "/"

    @property
    def address(self) -> str:
        """The relay's public wireleap:// address as clients dial it."""
        return f"wireleap://127.0.0.1:{self.port}{self.path if self.path != '/' else ''}"


def make_home(root: str, name: str, contract_url: str, role: str, port: int | None = None,
              path: str = "/", **settings: object) -> RelayHome:
    """A home with an identity and a config.json for one contract. Relays on one host dial
    each other on 127.0.0.1, hence `allow_loopback`."""
    home = Home(os.path.join(root, name))
    os.makedirs(home.root, exist_ok=True)
    ident = identity.create(home, lambda message: None)
    relay = RelayHome(home, port or free_port(), role, ident.public_key, path)
    write_config(relay, contract_url, **settings)
    return relay


def write_config(relay: RelayHome, contract_url: str, **settings: object) -> None:
    """config.json for one contract on 127.0.0.1, `settings` added or overriding."""
    cfg = {
        "address": f"127.0.0.1:{relay.port}",
        "contracts": {contract_url: {"role": relay.role, "address": relay.address}},
        "danger_zone": {"allow_loopback": True},
        **settings,
    }
    with open(relay.home.config, "w") as f:
        json.dump(cfg, f, indent=4)


@dataclass
class RelayProcess:
    """`wireleap-relay start --fg` in a home, its output in the home's log file."""

    relay: RelayHome
    command: list[str] | None = None  # default: this source tree's relay
    env: dict[str, str] | None = None  # added to this process's environment
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "RelayProcess":
        env = dict(os.environ, **(self.env or {}), **{HOME_ENV: self.relay.home.root})
        log = open(self.relay.home.log_file, "ab")
        command = self.command or [sys.executable, "-m", "wireleap_relay"]
        self.proc = subprocess.Popen(command + ["start", "--fg"], env=env,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until the relay is listening and enrolled, which its pid file says."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay {self.relay.home.root} exited with "
                                   f"{self.proc.returncode}:\n{self.log_text()[-3000:]}")
            if self._pid_file() == str(self.proc.pid):
                return
            time.sleep(0.05)
        raise TimeoutError(f"relay {self.relay.home.root} is not ready after {timeout}s")

    def _pid_file(self) -> str | None:
        try:
            with open(self.relay.home.pid_file) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    def log_text(self) -> str:
        with open(self.relay.home.log_file, errors="replace") as f:
            return f.read()

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
