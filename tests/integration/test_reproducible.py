"""Reproducible builds: two clones of one commit in different folders, each with its own
venv, build the same bytes, with `make build` and with `make release`; and a release
rebuilt from its commit the README's way checks against the release's signed hash."""

import os
import shutil
import subprocess
import tempfile
import zipfile

import pytest
from conftest import ROOT

NAME = "wireleap-relay_linux-amd64"
VERSION = "0.7.9"
RELEASE_URL = "http://127.0.0.1:9/releases"  # baked in, never fetched here


def clone(where) -> str:
    subprocess.run(["git", "clone", "-q", ROOT, str(where)], check=True, timeout=120)
    return str(where)


def make(folder: str, target: str) -> None:
    done = subprocess.run(["make", target], cwd=folder, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def clones(tmp_path_factory):
    return (clone(tmp_path_factory.mktemp("first") / "wireleap-relay"),
            clone(tmp_path_factory.mktemp("second-clone") / "src"))


def rebuild_command(signed_text: str) -> str:
    """The `make build ...` lines of a release's hash file, as one shell command."""
    lines = signed_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("$ make build"))
    command = []
    for line in lines[start:]:
        command.append(line.strip().removeprefix("$ ").removesuffix("\\"))
        if not line.endswith("\\"):
            break
    return " ".join(command)


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_two_builds_of_one_commit_are_identical(clones):
    first, second = clones
    make(first, "build")
    make(second, "build")
    built = [read(os.path.join(folder, "build", NAME)) for folder in clones]
    assert built[0] == built[1]
    hashes = [read(os.path.join(folder, "build", NAME + ".hash")) for folder in clones]
    assert hashes[0] == hashes[1]
    with zipfile.ZipFile(os.path.join(first, "build", NAME)) as archive:
        for info in archive.infolist():
            data = archive.read(info)
            for folder in clones:  # neither the clone nor its venv leaks into the file
                assert os.path.dirname(folder).encode() not in data, info.filename


def test_a_release_rebuilt_from_its_commit_checks_against_its_signed_hash(clones, gpg,
                                                                          tmp_path):
    first, second = clones
    changelogs = tmp_path / "changelogs"
    changelogs.mkdir()
    (changelogs / f"{VERSION}.md").write_text(f"# {VERSION}\n")
    published = tmp_path / "published"
    done = subprocess.run(
        [os.path.join(first, "contrib", "release.sh"), str(published)], cwd=first,
        env=dict(os.environ, GNUPGHOME=gpg.home, WIRELEAP_RELEASE_KEY=gpg.release,
                 WIRELEAP_RELEASE_URL=RELEASE_URL, WIRELEAP_CHANGELOG_DIR=str(changelogs),
                 WIRELEAP_VERSION=VERSION),
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    release = published / f"v{VERSION}"

    # The README's "Rebuilding a release": the operator's own keyring with only the key
    # from the release's .asc, and the build command the signed hash file gives.
    command = rebuild_command(read(release / (NAME + ".hash")).decode())
    operator = tempfile.mkdtemp(prefix="wl-rebuild-")  # short: gpg-agent's socket lives there
    env = dict(os.environ, GNUPGHOME=operator)
    try:
        subprocess.run(["gpg", "--batch", "--import",
                        str(release / "wireleap-relay-release-key.asc")],
                       env=env, check=True, capture_output=True)
        done = subprocess.run(["bash", "-c", command], cwd=second, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)
        shutil.rmtree(operator, ignore_errors=True)
    rebuilt = os.path.join(second, "build")
    assert read(os.path.join(rebuilt, NAME)) == read(release / NAME)
    check = subprocess.run(["sha512sum", "-c", str(release / (NAME + ".hash"))], cwd=rebuilt,
                           capture_output=True, text=True)
    assert (check.returncode, check.stdout) == (0, f"{NAME}: OK\n"), check.stderr
