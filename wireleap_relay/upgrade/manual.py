"""The interactive `upgrade` command (operations.md §3.8, §6.6).

Unlike the Go relay, which reports success as soon as the supervisor is launched, this
command waits for the supervisor and reports what really happened: the new version
answering on the listener, or the rollback. The supervisor runs in a session of its own,
so it finishes its work even if this command is interrupted.
"""

import logging
import sys
from typing import TextIO

from wireleap_relay import skipversion
from wireleap_relay.home import BINARY_NAME, Home
from wireleap_relay.semver import newer
from wireleap_relay.upgrade import (
    UpgradeError,
    channel,
    download,
    lock,
    release,
    stage,
    supervise,
)
from wireleap_relay.version import software_version

log = logging.getLogger(__name__)

NOT_SUPPORTED = (f"Your {BINARY_NAME} binary does not support upgrades (manual build?), "
                 "aborting.")
TRIES = 3


def upgrade(home: Home, stdin: TextIO = sys.stdin) -> int:
    settings = release.settings()
    if settings is None:
        print(NOT_SUPPORTED)
        return 1
    current = software_version()
    try:
        stage.check_installed(home)
        latest = channel.latest_version(home)
    except UpgradeError as exc:
        log.error("error: %s", exc)
        return 1
    if not newer(latest, current):
        print(f"Your {BINARY_NAME} is up to date (version {current}, {latest} available), "
              "nothing to do.")
        return 0
    try:
        with lock.held(home) as locked:
            return _upgrade_to(home, settings, current, latest, stdin, locked)
    except UpgradeError as exc:
        log.error("error: %s", exc)
        return 1


def _upgrade_to(home: Home, settings: release.Release, current: str, latest: str,
                stdin: TextIO, locked: int) -> int:
    stage.remove_quarantine(home)  # whatever an earlier, interrupted run left
    try:
        text = stage.changelog(home, settings, latest)
    except UpgradeError as exc:
        text = f"-- error getting changelog: {exc} --"
    print(f"Changelog for version {latest}:\n{text}")
    if skipversion.read(home.root) == latest:
        print(f"-- NOTE: upgrading to version {latest} seems to have failed the last time --")
    answer = confirm(current, latest, stdin)
    if answer is None:
        return 1
    if not answer:
        print("OK, aborting.")
        stage.remove_quarantine(home)
        return 1
    terminal = sys.stdout if sys.stdout.isatty() else None
    try:
        stage.stage(home, settings, latest, download.Progress(print, terminal))
        sys.stdout.flush()
        code = supervise.launch(home, current, latest, locked).wait()
    except UpgradeError as exc:
        log.error("error: %s", exc)
        return 1
    if code != 0:
        log.error("error: the upgrade to %s did not complete (supervise-upgrade exited with "
                  "%d, its lines above say why)", latest, code)
        return 1
    stage.remove_quarantine(home)
    print(f"{BINARY_NAME} successfully upgraded to version {latest} (was {current}).\n\n"
          f"NOTE: The old ({current}) binary can be restored:\n"
          f"cd {home.root} && ./{BINARY_NAME} rollback")
    return 0


def confirm(current: str, latest: str, stdin: TextIO) -> bool | None:
    """y/yes → True; n/no/empty/end of input → False; None after three answers that are
    neither (the message is printed)."""
    prompt = f"Proceed with upgrade from {current} to {latest}? (y/N) "
    for _ in range(TRIES):
        print(prompt, end="", flush=True)
        answer = stdin.readline().strip()
        if answer.lower() in ("y", "yes"):
            return True
        if answer.lower() in ("", "n", "no"):
            return False
        print(f"Response '{answer}' not understood. ", end="")
    print("Failed to get an answer 3 times. Aborting.")
    return None
