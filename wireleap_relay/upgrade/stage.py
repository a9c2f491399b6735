"""Getting a new version ready (operations.md §6.4): download into `quarantine/`, check the
signed hash file and the binary against it and that the binary runs and is the version
asked for; only then stage it as `wireleap-relay.next`."""

import os
import shutil

from wireleap_relay.fsutil import ensure_dir
from wireleap_relay.home import BINARY_NAME, Home
from wireleap_relay.upgrade import UpgradeError, binary, download, verify
from wireleap_relay.upgrade.release import Release

HASH_LIMIT = 64 * 1024
CHANGELOG_LIMIT = 1024 * 1024
BINARY_LIMIT = 512 * 1024 * 1024


def check_installed(home: Home) -> None:
    """The switch renames `<home>/wireleap-relay`: refuse early when the relay is not
    installed under that name (the README's install step renames the release file)."""
    if not os.path.isfile(home.binary):
        raise UpgradeError(f"{home.binary} does not exist: the upgrade replaces the relay "
                           f"installed under that name (see the README's install steps)")


def quarantine(home: Home) -> str:
    try:
        ensure_dir(home.quarantine, 0o700)
        os.chmod(home.quarantine, 0o700)
    except OSError as exc:
        raise UpgradeError(f"creating quarantine failed: {exc}") from exc
    return home.quarantine


def remove_quarantine(home: Home) -> None:
    shutil.rmtree(home.quarantine, ignore_errors=True)


def changelog(home: Home, release: Release, version: str) -> str:
    """The changelog of `version`, kept as quarantine/wireleap-relay.md. Raises
    UpgradeError; callers show the error and go on, as a missing changelog is no reason
    to skip an upgrade."""
    dest = os.path.join(quarantine(home), BINARY_NAME + ".md")
    download.fetch(release.changelog(version), dest, CHANGELOG_LIMIT)
    try:
        with open(dest, encoding="utf-8", errors="replace") as f:
            return f.read().rstrip("\n")
    except OSError as exc:
        raise UpgradeError(f"could not read {dest}: {exc}") from exc


def stage(home: Home, release: Release, version: str, progress: download.Progress) -> None:
    """Leave the verified `version` at `<home>/wireleap-relay.next`; raises UpgradeError."""
    check_installed(home)
    folder = quarantine(home)
    hash_file = os.path.join(folder, BINARY_NAME + ".hash")
    try:
        download.fetch(release.hash_url(version), hash_file, HASH_LIMIT, progress)
        verified = verify.clearsigned(hash_file, release.keyring)
        progress.say(f"Good signature from {verified.signer}")
        expected = verify.sha512_in(verified.text)
    except UpgradeError as exc:
        raise UpgradeError(f"downloading or verifying new {BINARY_NAME} {version} .hash file "
                           f"failed: {exc}") from exc
    staged = os.path.join(folder, BINARY_NAME)
    try:
        download.fetch(release.binary_url(version), staged, BINARY_LIMIT, progress)
        got = verify.file_sha512(staged)
        if got != expected:
            raise UpgradeError(f"hash mismatch: expected {expected}, got {got}")
        os.chmod(staged, 0o755)
        _check_runs_as(staged, version, home)
    except (UpgradeError, OSError) as exc:
        raise UpgradeError(f"downloading or verifying new {BINARY_NAME} {version} binary "
                           f"failed: {exc}") from exc
    try:
        os.replace(staged, home.binary_next)
    except OSError as exc:
        raise UpgradeError(f"moving new {BINARY_NAME} {version} binary out of quarantine "
                           f"({staged} -> {home.binary_next}) failed: {exc}") from exc


def _check_runs_as(path: str, version: str, home: Home) -> None:
    """The binary runs on this host and is `version`: a correctly signed *older* release
    served under the new version's URL (a replay) is caught here, before anything stops."""
    error, output = binary.run(path, "version", capture=True, home=home.root)
    said = output.strip()
    if error:
        raise UpgradeError(f"the new binary {path} does not run ({error}): {said[-500:]}")
    if said != version:
        raise UpgradeError(f"the new binary {path} is version {said!r}, not {version}")
