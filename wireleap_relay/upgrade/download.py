"""Downloads of release files over HTTP(S), with timeouts, a size cap, and progress: a
percentage rewritten in place on a terminal, plain lines anywhere else (log files, pipes)."""

import os
from collections.abc import Callable
from typing import TextIO

import requests

from wireleap_relay.upgrade import UpgradeError

# (connect, read): the read timeout is the longest silence between two chunks, not a
# limit on the whole download, so slow links still finish.
TIMEOUT = (15.0, 60.0)
CHUNK = 64 * 1024


class Progress:
    """Where download progress goes: `say` for whole lines; `terminal` (a tty) for the
    percentage, rewritten with `\\r`."""

    def __init__(self, say: Callable[[str], None], terminal: TextIO | None = None):
        self.say = say
        self.terminal = terminal
        self._line = ""
        self._shown = -1

    def begin(self, url: str, dest: str) -> None:
        self._line = f"Downloading {url} to {dest}..."
        self._shown = -1
        if self.terminal is None:
            self.say(self._line)

    def advance(self, done: int, total: int | None) -> None:
        if self.terminal is None or not total:
            return
        percent = min(100, done * 100 // total)
        if percent != self._shown:
            self._shown = percent
            self.terminal.write(f"\r{self._line} {percent}%")
            self.terminal.flush()

    def end(self) -> None:
        if self.terminal is not None:
            self.terminal.write("\n" if self._shown >= 0 else f"{self._line}\n")
            self.terminal.flush()


def fetch(url: str, dest: str, limit: int, progress: Progress | None = None) -> None:
    """Save `url` to `dest` (fsynced). Raises UpgradeError for any status but 200, a body
    larger than `limit`, a cut connection or a timeout."""
    progress = progress or Progress(lambda line: None)
    done = 0
    try:
        # identity: the hash covers the bytes as published, never a re-encoded body.
        with requests.get(url, stream=True, timeout=TIMEOUT,
                          headers={"Accept-Encoding": "identity"}) as resp:
            if resp.status_code != 200:
                raise UpgradeError(f"{url} download request returned code "
                                   f"{resp.status_code}: {resp.reason}")
            total = _length(resp)
            if total is not None and total > limit:
                raise UpgradeError(f"{url} is {total} bytes, more than the {limit} allowed")
            progress.begin(url, dest)
            try:
                with open(dest, "wb") as f:
                    for chunk in resp.iter_content(CHUNK):
                        done += len(chunk)
                        if done > limit:
                            raise UpgradeError(f"{url} is larger than the {limit} bytes "
                                               "allowed")
                        f.write(chunk)
                        progress.advance(done, total)
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                progress.end()
    except requests.RequestException as exc:
        raise UpgradeError(f"downloading {url} failed after {done} bytes: {exc}") from exc
    except OSError as exc:
        raise UpgradeError(f"could not save {url} to {dest}: {exc}") from exc
    if total is not None and done != total:
        raise UpgradeError(f"downloading {url} failed: got {done} of {total} bytes")


def _length(resp: requests.Response) -> int | None:
    try:
        return int(resp.headers["Content-Length"])
    except (KeyError, ValueError):
        return None
