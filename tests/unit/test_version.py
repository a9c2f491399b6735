"""Version derivation (operations.md §7, §8.1) and the interface versions."""

import os
import re
import subprocess
import sys
import types

import pytest

from wireleap_relay import version


@pytest.fixture(autouse=True)
def fresh_version():
    """software_version is cached per process; these tests change what it would find."""
    version.software_version.cache_clear()
    yield
    version.software_version.cache_clear()

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}


class Repo:
    """A throwaway git repository laid out like this project."""

    def __init__(self, path):
        self.path = str(path)
        self.git("init", "-q")
        os.makedirs(os.path.join(self.path, "wireleap_relay"))

    def git(self, *args):
        env = dict(os.environ, **GIT_ENV)
        out = subprocess.run(["git", "-C", self.path, *args], env=env, check=True,
                             capture_output=True, text=True)
        return out.stdout.strip()

    def commit(self, name="file.txt", text=None):
        path = os.path.join(self.path, name)
        with open(path, "a") as f:
            f.write(text if text is not None else "x\n")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", f"change {name}")
        return self.head()

    def set_base(self, base):
        return self.commit("wireleap_relay/version.py", f'BASE_VERSION = "{base}"\n')

    def head(self):
        return self.git("rev-parse", "--short=7", "HEAD")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setattr(version, "BASE_VERSION", "0.7.0")  # what the throwaway repo sets
    return Repo(tmp_path)


def test_on_annotated_tag(repo):
    repo.commit()
    repo.set_base("0.7.0")
    repo.git("tag", "-a", "v0.7.0", "-m", "release 0.7.0")
    assert version.git_version(repo.path) == "0.7.0"


def test_past_annotated_tag(repo):
    repo.set_base("0.7.0")
    repo.git("tag", "-a", "v0.7.0", "-m", "release 0.7.0")
    repo.commit()
    head = repo.commit()
    assert version.git_version(repo.path) == f"0.7.1-dev.2+g{head}"


def test_untagged_counts_from_base_commit(repo):
    repo.commit()
    repo.commit()
    repo.set_base("0.7.0")
    repo.commit("a.txt")
    repo.commit("b.txt")
    head = repo.commit("c.txt")
    assert version.git_version(repo.path) == f"0.7.1-dev.3+g{head}"


def test_untagged_on_base_commit(repo):
    head = repo.set_base("0.7.0")
    assert version.git_version(repo.path) == f"0.7.1-dev.0+g{head}"


def test_lightweight_tag_is_ignored(repo):
    repo.set_base("0.7.0")
    repo.git("tag", "v0.7.0")
    head = repo.commit()
    assert version.git_version(repo.path) == f"0.7.1-dev.1+g{head}"


def test_other_release_tags_are_ignored(repo):
    repo.set_base("0.7.0")
    repo.git("tag", "-a", "v0.6.1", "-m", "older release")
    head = repo.commit()
    assert version.git_version(repo.path) == f"0.7.1-dev.1+g{head}"


def test_base_version_never_set_in_history(repo):
    repo.commit("wireleap_relay/version.py", 'BASE_VERSION = "0.6.1"\n')
    assert version.git_version(repo.path) is None


def test_not_a_git_checkout(tmp_path):
    assert version.git_version(str(tmp_path)) is None


def test_repo_without_commits(repo):
    assert version.git_version(repo.path) is None


def test_git_version_forms_are_semver(repo):
    repo.set_base("0.7.0")
    head = repo.commit()
    assert re.fullmatch(r"0\.7\.1-dev\.1\+g[0-9a-f]{7}", version.git_version(repo.path))
    assert head in version.git_version(repo.path)


def test_software_version_prefers_baked_build(monkeypatch):
    monkeypatch.setitem(sys.modules, "wireleap_relay._build",
                        types.SimpleNamespace(VERSION="9.8.7"))
    assert version.software_version() == "9.8.7"
    assert version.verbose_lines()[0] == "9.8.7"


def test_software_version_falls_back_to_base(monkeypatch, tmp_path):
    import wireleap_relay

    monkeypatch.setitem(sys.modules, "wireleap_relay._build", None)  # no baked version
    monkeypatch.delattr(wireleap_relay, "_build", raising=False)
    monkeypatch.setattr(version, "_SOURCE_ROOT", str(tmp_path))  # and no git checkout
    assert version.software_version() == version.BASE_VERSION


def test_verbose_lines(monkeypatch):
    monkeypatch.setitem(sys.modules, "wireleap_relay._build",
                        types.SimpleNamespace(VERSION="0.7.0"))
    assert version.verbose_lines() == [
        "0.7.0",
        "relay-contract interface version 0.1.0",
        "relay-dir interface version 0.2.0",
        "relay-relay interface version 0.2.0",
        "client-relay interface version 0.2.0",
    ]


def test_interface_versions():
    assert version.interface_version("client-relay") == "0.2.0"
    assert version.interface_version("relay-relay") == "0.2.0"
    assert version.interface_version("relay-dir") == "0.2.0"
    assert version.interface_version("relay-contract") == "0.1.0"
    with pytest.raises(KeyError):
        version.interface_version("relay-client")


def test_base_version_is_plain_semver():
    assert re.fullmatch(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)", version.BASE_VERSION)


def test_builds_past_a_release_sort_between_it_and_the_next():
    """Never offered a 'downgrade' to the release they are built on (issue 11, item 5)."""
    from wireleap_relay.semver import is_semver, newer

    ordered = ["0.7.0", "0.7.1-dev.2+gaaaaaaa", "0.7.1-dev.10+g0000000", "0.7.1",
               "0.7.2-dev.1+gbbbbbbb", "0.8.0"]
    for older, later in zip(ordered, ordered[1:], strict=False):
        assert is_semver(later) and newer(later, older) and not newer(older, later)
