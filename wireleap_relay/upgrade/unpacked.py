"""The single file's unpacked libraries in the home (`wireleap-relay.lib/`, see launcher.py):
one folder per build, about 55 MB each, that nothing but this removes.

A build's folder stays while `wireleap-relay` or `wireleap-relay.prev` is that build, or
while a running process has one of its files mapped (an old master still draining its
streams after a hand-over). Everything else goes after an upgrade or a rollback, and when a
daemon starts (for folders that were still in use at the last upgrade).
"""

import fcntl
import json
import logging
import os
import re
import shutil
import zipfile

from wireleap_relay import launcher
from wireleap_relay.home import Home

log = logging.getLogger(__name__)

PROC = "/proc"
# Names under the root: `<build>/`, and shiv's `<build>.tmp/` and `.<build>_lock`.
_ENTRY = re.compile(r"^\.?([0-9a-f]{64})(?:\.tmp|_lock)?$")


def build_id(binary: str) -> str | None:
    """The build a single file unpacks as; None for anything else."""
    try:
        with zipfile.ZipFile(binary) as archive:
            return json.loads(archive.read("environment.json"))["build_id"]
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError):
        return None


def prune(home: Home) -> list[str]:
    """Remove the unpacked builds no longer needed; the names removed."""
    root = os.path.realpath(launcher.unpack_root(home.root))  # as /proc/*/maps shows it
    try:
        names = sorted(os.listdir(root))
    except OSError:  # none: not run as a single file
        return []
    in_use = builds_in_use(root)
    if in_use is None:
        log.info("not removing unused unpacked builds from %s: /proc cannot tell which are "
                 "in use", root)
        return []
    keep = {build_id(path) for path in (home.binary, home.binary_prev, home.binary_next)}
    keep |= in_use
    removed = []
    for name in names:
        match = _ENTRY.match(name)
        if match is None or match.group(1) in keep:
            continue
        path = os.path.join(root, name)
        if _being_unpacked(root, match.group(1)):
            continue  # right now, by another process (a staged download's `version` check)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError as exc:
            log.warning("could not remove the unused unpacked build %s: %s", path, exc)
            continue
        removed.append(name)
    if removed:
        log.info("removed unused unpacked builds from %s: %s", root, ", ".join(removed))
    return removed


def _being_unpacked(root: str, build: str) -> bool:
    """Whether a process holds shiv's lock of the build (it extracts under it)."""
    try:
        fd = os.open(os.path.join(root, f".{build}_lock"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock, if we got it
    return False


def builds_in_use(root: str) -> set[str] | None:
    """Builds under root that another process we can see has files of mapped (extension
    modules: every relay process that serves or upgrades loads some). This process does
    not count: it is the current build, or a rollback about to end. None without /proc."""
    prefix = root.rstrip("/") + "/"
    used = set()
    try:
        pids = os.listdir(PROC)
    except OSError:
        return None  # no /proc (a chroot): nothing can be known to be unused
    for pid in pids:
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"{PROC}/{pid}/maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    where = line.find(prefix)
                    if where >= 0:
                        match = _ENTRY.match(line[where + len(prefix):].split("/", 1)[0])
                        if match:
                            used.add(match.group(1))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return used
