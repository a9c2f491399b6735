"""The software version and the interface versions this relay speaks (operations.md §7, §8).

A release is the commit tagged v<BASE_VERSION>. A build N commits past it is a pre-release
of the next patch, `0.7.1-dev.N+gHASH`: semver orders it after the release it builds on
and before the next one (git's own `0.7.0-N-gHASH`, which the Go relay's local builds
carry, is a pre-release of 0.7.0 and sorts before it, so such a build would be "upgraded"
to the very release it is past). The single-file build bakes the computed version into
`_build.py`; a source checkout asks git at run time.
"""

import functools
import os
import subprocess

BASE_VERSION = "0.7.0"

INTERFACES = (
    ("relay-contract", "0.1.0"),
    ("relay-dir", "0.2.0"),
    ("relay-relay", "0.2.0"),
    ("client-relay", "0.2.0"),
)

_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.cache  # a running process keeps the version it started as; git costs 4 runs
def software_version() -> str:
    try:
        from wireleap_relay import _build  # written by contrib/build-bin.sh
    except ImportError:
        return git_version(_SOURCE_ROOT) or BASE_VERSION
    return _build.VERSION


def git_version(repo: str) -> str | None:
    """`0.7.0` on the release commit, `0.7.1-dev.5+gabc1234` five commits past it.

    Without a release tag, commits are counted from the commit that set BASE_VERSION, so
    the number still grows with every commit. None outside a git checkout.
    """
    described = _git(repo, "describe", "--match", f"v{BASE_VERSION}")
    if described:
        tag, _, past = described.removeprefix("v").partition("-")
        if not past:
            return tag
        count, commit = past.split("-g")
        return dev_version(count, commit)
    since = _git(repo, "log", "-n1", "--format=%H", f"-SBASE_VERSION = \"{BASE_VERSION}\"",
                 "--", "wireleap_relay/version.py")
    head = _git(repo, "rev-parse", "--short=7", "HEAD")
    if not since or not head:
        return None
    count = _git(repo, "rev-list", "--count", f"{since}..HEAD")
    return dev_version(count, head)


def dev_version(count: str, commit: str) -> str:
    major, minor, patch = BASE_VERSION.split(".")
    return f"{major}.{minor}.{int(patch) + 1}-dev.{count}+g{commit}"


def _git(repo: str, *args: str) -> str | None:
    if not os.path.exists(os.path.join(repo, ".git")):
        return None
    try:
        out = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def interface_version(name: str) -> str:
    return dict(INTERFACES)[name]


def verbose_lines() -> list[str]:
    return [software_version()] + [f"{name} interface version {v}" for name, v in INTERFACES]
