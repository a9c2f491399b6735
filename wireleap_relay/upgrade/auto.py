"""What the daemon does with an upgrade notice from a heartbeat (operations.md §6.10):
upgrade itself when the build supports it and `auto_upgrade` is on, otherwise say once per
version that one is available. Either way a version is handled once: a failed automatic
upgrade and a merely announced version both go to `.skip-upgrade-version`."""

import logging
import os

import gevent

from wireleap_relay import skipversion
from wireleap_relay.home import BINARY_NAME, Home
from wireleap_relay.semver import is_semver
from wireleap_relay.upgrade import UpgradeError, download, lock, release, stage, supervise
from wireleap_relay.version import software_version

log = logging.getLogger(__name__)


def notice_handler(home: Home, auto_upgrade: bool) -> "NoticeHandler":
    """The callback for upgrade notices; it returns at once (the upgrade runs in its own
    greenlet, so heartbeats go on meanwhile)."""
    return NoticeHandler(home, auto_upgrade, release.settings())


class NoticeHandler:
    def __init__(self, home: Home, auto_upgrade: bool, settings: release.Release | None):
        self.home = home
        self.auto_upgrade = auto_upgrade
        self.settings = settings
        # Set while an upgrade runs and for good once a supervisor is launched: every
        # heartbeat repeats the notice until the supervisor has stopped this daemon, and a
        # second supervisor would race the first one.
        self.upgrade: gevent.Greenlet | None = None
        self.announced: str | None = None  # the last version a directory announced

    def __call__(self, version: str) -> None:
        if not is_semver(version):
            return
        self.announced = version
        if skipversion.read(self.home.root) == version:
            return
        if self.auto_upgrade and self.settings is not None:
            if self.upgrade is None:
                self.upgrade = gevent.spawn(self._upgrade, self.settings, version)
            return
        reason = "'auto_upgrade' is disabled" if not self.auto_upgrade \
            else "this binary was not built with upgrade support"
        log.info("There is a new %s version available: %s. Since %s, please upgrade "
                 "manually.", BINARY_NAME, version, reason)
        skipversion.skip(self.home.root, version, log.info)

    def _upgrade(self, settings: release.Release, version: str) -> None:
        log.info("Received new update notification for version %s.", version)
        try:
            locked = lock.acquire(self.home)
        except UpgradeError as exc:
            log.info("Not upgrading to %s now: %s.", version, exc)
            self.upgrade = None  # the next heartbeat's notice tries again
            return
        try:
            self._staged_and_launched(settings, version, locked)
        finally:
            os.close(locked)  # the supervisor holds its own copy of the lock

    def _staged_and_launched(self, settings: release.Release, version: str,
                             locked: int) -> None:
        stage.remove_quarantine(self.home)  # whatever an earlier, interrupted run left
        try:
            text = stage.changelog(self.home, settings, version)
            log.info("Changelog:")
            print(text, flush=True)  # to stdout, the log file, as Go does
        except UpgradeError as exc:
            log.info("-- error getting changelog: %s --", exc)
        log.info("Upgrading to version %s...", version)
        try:
            stage.stage(self.home, settings, version, download.Progress(log.info))
            supervise.launch(self.home, software_version(), version, locked)  # it stops us
        except UpgradeError as exc:
            log.info("Could not upgrade to new %s version %s: %s, skipping update.",
                     BINARY_NAME, version, exc)
            skipversion.skip(self.home.root, version, log.info)
            self.upgrade = None  # a newer version may still be tried
