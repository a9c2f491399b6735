"""Crash safety at scale: kill -9 the whole relay (master and workers at once) at random
moments while streams are accepted (tokens written by the workers) and tokens are
submitted (by the master), restart it, again and again. Then every token whose stream
was served is paid exactly once: in the contract, once; nothing torn on disk.

WIRELEAP_CRASH_TRIALS=N runs N kills (CI: 12; docs/reliability.md quotes a longer run).
"""

import json
import os
import random
import signal
import time

import gevent
from conftest import FAST, echo_once, wait_for

from wireleap_relay.testing.procstat import process_tree
from wireleap_relay.testing.relayproc import RelayProcess, make_home
from wireleap_relay.testing.servicekey import Wallet
from wireleap_relay.wire.sharetoken import Sharetoken

TRIALS = int(os.environ.get("WIRELEAP_CRASH_TRIALS", "12"))


class Streams:
    """Streams opened one after another, each with a fresh token (1 hop); remembers the
    tokens of the streams that were served, whose token the relay had on disk before it
    dialed."""

    def __init__(self, relay, wallet, target, monkeypatch):
        self.served: set[str] = set()
        self._minted: list[str] = []
        real_mint = Sharetoken.mint.__func__

        def recording_mint(cls, *args, **kwargs):
            token = real_mint(cls, *args, **kwargs)
            self._minted.append(token.signature_b64)
            return token
        monkeypatch.setattr(Sharetoken, "mint", classmethod(recording_mint))
        self._greenlet = gevent.spawn(self._run, relay, wallet, target)

    def _run(self, relay, wallet, target) -> None:
        while True:
            try:
                if echo_once(relay, wallet, target):
                    self.served.add(self._minted[-1])
            except Exception:  # noqa: BLE001 - refused or cut by a kill: not served
                gevent.sleep(0.02)

    def stop(self) -> set[str]:
        self._greenlet.kill()
        return self.served


def kill_everything(proc: RelayProcess) -> None:
    """SIGKILL to the master, its fork server and each of its workers in the same
    instant."""
    for pid in process_tree(proc.proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.proc.wait()


def pending(relay) -> list[str]:
    return [p for p in token_files(relay.home.sharetokens)
            if "/expired/" not in p and "/malformed/" not in p]


def token_files(root: str) -> list[str]:
    found = []
    for folder, _, names in os.walk(root):
        found += [os.path.join(folder, n) for n in names if n.endswith(".json")
                  and not n.startswith(".")]
    return found


def test_kill_9_at_random_never_loses_or_doubles_a_token(tmp_path, make_fake, echo_server,
                                                          monkeypatch):
    fake = make_fake(servicekey_duration=1, submission_window=3600, submit_delay=0.02)
    relay = make_home(str(tmp_path), "relay", fake.url, "backing", workers=2,
                      auto_submit_interval="0.2s", archive_dir="archive")
    proc = RelayProcess(relay, env=FAST).start()
    wallet = Wallet(fake.url, margin=0)
    streams = Streams(relay, wallet, echo_server, monkeypatch)
    rng = random.Random(int(os.environ.get("WIRELEAP_CRASH_SEED", "1")))
    try:
        for _ in range(TRIALS):
            time.sleep(rng.uniform(0.05, 0.6))
            kill_everything(proc)
            proc.start(timeout=30)
    finally:
        served = streams.stop()
    # Quiet now: whatever was accepted gets submitted.
    assert wait_for(lambda: not pending(relay), timeout=120), \
        (len(pending(relay)), proc.log_text()[-2000:])
    proc.stop()

    state = fake.snapshot()
    for path in token_files(relay.home.sharetokens) + token_files(relay.home.path("archive")):
        with open(path) as f:
            json.load(f)  # nothing torn
    assert not token_files(os.path.join(relay.home.sharetokens, "malformed"))
    assert not token_files(os.path.join(relay.home.sharetokens, "expired"))
    # Each served stream's token reached the contract and was accepted there once (a
    # token submitted again after a crash meets 409 duplicate, which the relay takes as
    # accepted); the archive holds only paid tokens.
    assert served and served <= set(state["tokens"]), served - set(state["tokens"])
    archived = {os.path.basename(p)[:-5] for p in token_files(relay.home.path("archive"))}
    assert archived <= set(state["tokens"])
    again = sum(1 for count in state["submissions"].values() if count > 1)
    print(f"{TRIALS} kills: {len(served)} streams served, {len(state['tokens'])} tokens paid "
          f"({again} submitted again after a crash), {state['submit_requests']} submit "
          "requests")
