"""Rollback (operations.md §3.9, §6.11): stop the relay, put `wireleap-relay.prev` and
`config.json.prev` back, and start the relay again. The same steps undo a failed supervised
upgrade.

Unlike the Go relay, a rollback that restores a binary also writes the version it undid to
`.skip-upgrade-version`: otherwise the next heartbeat's upgrade notice installs that very
version again a few minutes later (`auto_upgrade` is on by default).
"""

import logging
import os

from wireleap_relay import skipversion
from wireleap_relay.fsutil import fsync_dir
from wireleap_relay.home import BINARY_NAME, Home
from wireleap_relay.semver import is_semver
from wireleap_relay.upgrade import UpgradeError, binary, unpacked

log = logging.getLogger(__name__)

START_TRIES = 3


def rollback(home: Home) -> None:
    """Raises UpgradeError when there is nothing to go back to (nothing is touched then), a
    file cannot be restored or the relay does not start."""
    if not os.path.exists(home.binary_prev) and not os.path.exists(home.config_prev):
        raise UpgradeError(f"there is no previous version to go back to (no "
                           f"{os.path.basename(home.binary_prev)} or "
                           f"{os.path.basename(home.config_prev)} in {home.root}); "
                           "nothing was changed")
    log.info("stopping running %s (if present)...", BINARY_NAME)
    # Any binary's `stop` stops the daemon of the pid file; the old one is known to work.
    stopper = home.binary_prev if os.path.exists(home.binary_prev) else home.binary
    error, output = binary.run(stopper, "stop", capture=True)
    if error:
        log.info("'%s stop' returned error %s, output: %s", stopper, error, output.strip())
    restore_files(home)
    log.info("starting old %s...", BINARY_NAME)
    failures = []
    for attempt in range(1, START_TRIES + 1):
        error, _ = binary.run(home.binary, "start")  # its own output says why
        if not error:
            unpacked.prune(home)
            return
        failures.append(f"FAILED to start old {BINARY_NAME}, try {attempt}: {error}")
    raise UpgradeError(f"failed to bring old binary up -- there is no {BINARY_NAME} "
                       f"running! {' '.join(failures)}")


def restore_files(home: Home) -> None:
    """Put `.prev` binary and config back over the current ones; the undone version goes to
    the skip file."""
    if os.path.exists(home.binary_prev):
        undone = _version_of(home.binary)
        log.info("restoring old binary...")
        _restore(home.binary_prev, home.binary)
        if undone:
            skipversion.skip(home.root, undone, log.info)
    if os.path.exists(home.config_prev):
        log.info("restoring old config file...")
        _restore(home.config_prev, home.config)


def _version_of(path: str) -> str | None:
    error, output = binary.run(path, "version", capture=True)
    said = output.strip()
    return said if not error and is_semver(said) else None


def _restore(prev: str, current: str) -> None:
    try:
        os.replace(prev, current)
        fsync_dir(os.path.dirname(current))
    except OSError as exc:
        raise UpgradeError(f"could not move {prev} to {current}: {exc}") from exc
