"""The supervised switch to a new version (operations.md §6.7), run by the new binary as
`wireleap-relay.next supervise-upgrade <old version>` in a session of its own, so it
outlives the process that launched it (on an automatic upgrade it stops that very daemon).

Steps: migrate the config into `config.json.next`; put the new binary and config in place,
keeping `wireleap-relay.prev` and `config.json.prev`; have the running daemon hand its
listening socket over to the new binary (as `restart` does: no refused connection, running
streams finish on the old workers), or start it when none runs; and check that it answers a
PING on its listener. If the new daemon does not come up, the old one never stopped
serving: the files are put back and the version goes to `.skip-upgrade-version`.

Unlike the Go relay, the files are renamed before the new daemon starts, not after: this
daemon reads only `config.json` (a leftover `config.json.next` never wins silently), and
the hand-over starts whatever binary is in place.
"""

import logging
import os
import subprocess
import time

from wireleap_relay import config, identity, lifecycle, pidfile, skipversion
from wireleap_relay.fsutil import fsync_dir
from wireleap_relay.home import BINARY_NAME, Home
from wireleap_relay.selfexec import command_for
from wireleap_relay.semver import precedence
from wireleap_relay.upgrade import UpgradeError, binary, migrate, probe, rollback, unpacked
from wireleap_relay.version import software_version

log = logging.getLogger(__name__)

PING_TRIES = 5


def launch(home: Home, from_version: str, to_version: str, locked: int) -> subprocess.Popen:
    """Start the staged binary's supervisor, detached from our session and signals; it
    writes to our stdout and stderr (the terminal, or the daemon's log file). It inherits
    the upgrade lock `locked` and holds it until it exits."""
    log.info("Running supervised upgrade to %s...", to_version)
    try:
        return subprocess.Popen([*command_for(home.binary_next), "supervise-upgrade",
                                 from_version], pass_fds=(locked,),
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise UpgradeError(f"supervise-upgrade Start() returned error {exc}") from exc


def supervise(home: Home, from_version: str) -> int:
    """The supervisor's whole run; its exit status."""
    new = software_version()
    try:
        precedence(from_version)
    except ValueError as exc:
        return _abort([f"could not parse version '{from_version}' to upgrade from: {exc}"])
    log.info("running migrations...")
    try:
        migrate.migrate(home, from_version, new)
    except UpgradeError as exc:
        return _abort([f"migrate returned error {exc}"])
    log.info("removing .prev files if present...")
    for path in (home.config_prev, home.binary_prev):
        _remove(path)
    pid = _running_pid(home)
    try:
        _switch(home)
    except UpgradeError as exc:
        return _undo(home, new, str(exc), running=pid is not None)
    if pid is not None:
        log.info("handing over from the old %s, pid %d...", BINARY_NAME, pid)
        if lifecycle.handover(home, pid, log.info) != 0:
            return _undo(home, new, "the new binary did not take over", running=True)
    try:
        _start(home, already_running=pid is not None)
    except UpgradeError as exc:
        return _undo(home, new, str(exc), running=False)
    log.info("%s upgraded to %s (was %s)", BINARY_NAME, new, from_version)
    unpacked.prune(home)
    return 0


def _switch(home: Home) -> None:
    """The old files become `.prev` by a second link, then the new ones replace them in
    one rename each: at no moment is there no `wireleap-relay` or `config.json` (a
    restart by systemd or cron in between would find nothing to run)."""
    log.info("replacing %s binary...", BINARY_NAME)
    _keep_as_prev(home.binary, home.binary_prev)
    _rename(home.binary_next, home.binary)
    log.info("replacing config file...")
    _keep_as_prev(home.config, home.config_prev)
    _rename(home.config_next, home.config)
    fsync_dir(home.root)


def _keep_as_prev(current: str, prev: str) -> None:
    _remove(prev)
    try:
        os.link(current, prev)
    except OSError as exc:
        raise UpgradeError(f"linking {current} -> {prev} failed: {exc}") from exc


def _start(home: Home, already_running: bool) -> None:
    if not already_running:
        log.info("running new %s...", BINARY_NAME)
        error, _ = binary.run(home.binary, "start")
        if error:
            raise UpgradeError(f"'{home.binary} start' returned error {error}")
    try:
        cfg, _ = config.load(home.config)
        relay_pk = identity.load(home).public_key_b64
    except (config.ConfigError, identity.IdentityError) as exc:
        raise UpgradeError(f"cannot tell where the new {BINARY_NAME} listens: {exc}") from exc
    host, port = cfg.listen_host_port
    host = probe.loopback_for(host)
    log.info("checking that the new %s answers on %s:%d...", BINARY_NAME, host, port)
    for attempt in range(1, PING_TRIES + 1):
        try:
            probe.ping(host, port, relay_pk)
            log.info("the new %s answers PING", BINARY_NAME)
            return
        except UpgradeError:
            if attempt == PING_TRIES:
                raise
            time.sleep(1.0)


def _undo(home: Home, new: str, error: str, running: bool) -> int:
    """Put the old files back; restart the old relay only if it is not still serving."""
    errors = [error]
    log.info("handling upgrade failure...")
    try:
        if running:
            rollback.restore_files(home)
        else:
            rollback.rollback(home)
    except UpgradeError as exc:
        errors.append(f"rollback FAILED: {exc}")
    _remove(home.binary_next)  # the failed version, when it was not moved yet
    skipversion.skip(home.root, new, log.info)
    return _abort(errors)


def _abort(errors: list[str]) -> int:
    for error in errors:
        log.info("* %s", error)
    log.error("aborted supervised upgrade due to the above errors")
    return 1


def _running_pid(home: Home) -> int | None:
    pid = pidfile.read_quietly(home.pid_file)
    return pid if pid is not None and pidfile.alive(pid) else None


def _rename(src: str, dst: str) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        raise UpgradeError(f"renaming {src} -> {dst} failed: {exc}") from exc


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
