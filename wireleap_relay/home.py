"""The relay home and every file in it (operations.md §2).

The home is the folder of the executable, as the Go relay and the README's systemd unit
expect. For the single-file build that is the folder of the .pyz itself, never shiv's
unpack cache. WIRELEAP_HOME overrides it for development and tests.
"""

import os
import sys
from dataclasses import dataclass

HOME_ENV = "WIRELEAP_HOME"
BINARY_NAME = "wireleap-relay"


def find_home() -> str:
    override = os.environ.get(HOME_ENV)
    if override:
        return os.path.abspath(override)
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if not argv0 or os.path.basename(argv0) == "__main__.py":
        # `python -m wireleap_relay`: there is no relay executable to live beside.
        return os.getcwd()
    return os.path.dirname(os.path.realpath(argv0))


@dataclass(frozen=True)
class Home:
    root: str

    def path(self, *parts: str) -> str:
        """A path inside the home. Absolute config paths are re-rooted here on purpose,
        as the Go relay does (operations.md §2.2)."""
        return os.path.join(self.root, *(p.lstrip("/") for p in parts))

    @property
    def config(self) -> str:
        return self.path("config.json")

    @property
    def key_seed(self) -> str:
        return self.path("key.seed")

    @property
    def key_pub(self) -> str:
        return self.path("key.pub")

    @property
    def tls_cert(self) -> str:
        return self.path("relay-cert.pem")

    @property
    def tls_key(self) -> str:
        return self.path("relay-key.pem")

    @property
    def license(self) -> str:
        return self.path("LICENSE")

    @property
    def pid_file(self) -> str:
        return self.path(BINARY_NAME + ".pid")

    @property
    def reload_answer(self) -> str:
        """The daemon's answer to the last reload, for `reload` to report."""
        return self.path("." + BINARY_NAME + ".reload")

    @property
    def log_file(self) -> str:
        return self.path(BINARY_NAME + ".log")

    @property
    def stats(self) -> str:
        """Network usage of the running period (control.md §6.3)."""
        return self.path("stats.json")

    @property
    def stats_lock(self) -> str:
        """Held while stats.json is read and rewritten: during a hand-over two masters
        each add their own bytes to it."""
        return self.path(".stats.json.lock")

    @property
    def sharetokens(self) -> str:
        return self.path("sharetokens")

    # The upgrade's files (operations.md §6): the installed binary under its fixed name,
    # the staged next version, the previous one kept for rollback, and the download area.

    @property
    def binary(self) -> str:
        return self.path(BINARY_NAME)

    @property
    def binary_next(self) -> str:
        return self.path(BINARY_NAME + ".next")

    @property
    def binary_prev(self) -> str:
        return self.path(BINARY_NAME + ".prev")

    @property
    def config_next(self) -> str:
        return self.path("config.json.next")

    @property
    def config_prev(self) -> str:
        return self.path("config.json.prev")

    @property
    def quarantine(self) -> str:
        return self.path("quarantine")


def current() -> Home:
    return Home(find_home())
