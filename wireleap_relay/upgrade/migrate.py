"""Migrations (operations.md §3.15, §6.8): the new binary prepares `config.json.next` from
`config.json`; the supervisor puts it in place, keeping the old one as `config.json.prev`.

The list is empty: 0.7.0 is the first release of this relay, and its config reader already
takes every config written for the Go relays 0.3–0.6 as it is (the 2021 `update_channel`
is read as `upgrade_channel`, unknown keys are warnings), so Go's one migration
(`upgrade_channel`, 0.5.0) has nothing to do here. A later release that changes the config
adds a Migration with its version; it runs when upgrading from an older version.
"""

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from wireleap_relay.fsutil import write_atomic
from wireleap_relay.home import BINARY_NAME, Home
from wireleap_relay.semver import newer, precedence
from wireleap_relay.upgrade import UpgradeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: str  # the release that needs it
    name: str
    apply: Callable[[str], None]  # rewrites the config.json.next at this path


MIGRATIONS: tuple[Migration, ...] = ()


def migrate(home: Home, from_version: str, to_version: str) -> None:
    """Copy config.json to config.json.next (same mode), then apply every migration
    newer than `from_version` and not newer than `to_version`, oldest first."""
    try:
        precedence(from_version)
    except ValueError as exc:
        raise UpgradeError(f"could not parse supplied version '{from_version}': {exc}") from exc
    try:
        with open(home.config, "rb") as f:
            raw = f.read()
        mode = os.stat(home.config).st_mode & 0o777
    except OSError as exc:
        raise UpgradeError(f"could not read old config file: {exc}") from exc
    try:
        write_atomic(home.config_next, raw, mode)
    except OSError as exc:
        raise UpgradeError(f"could not copy old config to new config file: {exc}") from exc
    for migration in sorted(MIGRATIONS, key=lambda m: precedence(m.version)):
        if newer(migration.version, from_version) and not newer(migration.version, to_version):
            log.info("running %s migration '%s' for %s %s...", migration.version,
                     migration.name, BINARY_NAME, to_version)
            try:
                migration.apply(home.config_next)
            except Exception as exc:  # any failure of a migration stops the upgrade
                raise UpgradeError(f"FAILED to apply migration: {exc}") from exc
