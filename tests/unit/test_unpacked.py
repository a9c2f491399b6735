"""Pruning the single file's unpacked builds: what stays, what goes, and what a running
process still uses."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from wireleap_relay import launcher
from wireleap_relay.home import Home
from wireleap_relay.upgrade import unpacked

CURRENT, PREVIOUS, OLD, OLDER, MAPPED = (c * 64 for c in "abcde")


def single_file(path, build):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("environment.json", json.dumps({"build_id": build}))


@pytest.fixture
def home(tmp_path):
    where = Home(str(tmp_path))
    single_file(where.binary, CURRENT)
    single_file(where.binary_prev, PREVIOUS)
    root = launcher.unpack_root(where.root)
    for build in (CURRENT, PREVIOUS, OLD, OLDER, MAPPED):
        os.makedirs(os.path.join(root, build, "site-packages"))
        open(os.path.join(root, f".{build}_lock"), "w").close()
    os.makedirs(os.path.join(root, OLDER + ".tmp"))  # an unpack that was cut short
    os.makedirs(os.path.join(root, "not-a-build"))
    return where


def listing(where):
    return sorted(os.listdir(launcher.unpack_root(where.root)))


@pytest.fixture
def mapper(home):
    """Another process with a file of MAPPED mapped, as a relay maps its extensions."""
    path = os.path.join(launcher.unpack_root(home.root), MAPPED, "site-packages", "ext.so")
    with open(path, "wb") as f:
        f.write(b"\0" * 4096)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import mmap, sys; f = open(sys.argv[1], 'rb'); "
         "m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ); print('mapped', flush=True); "
         "sys.stdin.read()", path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "mapped\n"
    yield proc
    proc.stdin.close()
    proc.wait(timeout=10)


def test_keeps_current_previous_and_mapped_builds(home, mapper):
    removed = unpacked.prune(home)
    assert sorted(removed) == sorted([OLD, f".{OLD}_lock", OLDER, f".{OLDER}_lock",
                                      OLDER + ".tmp"])
    assert listing(home) == sorted([CURRENT, f".{CURRENT}_lock", PREVIOUS, f".{PREVIOUS}_lock",
                                    MAPPED, f".{MAPPED}_lock", "not-a-build"])


def test_a_build_no_longer_mapped_goes_next_time(home, mapper):
    unpacked.prune(home)
    mapper.stdin.close()
    mapper.wait(timeout=10)
    assert unpacked.prune(home) == [f".{MAPPED}_lock", MAPPED]


def test_without_previous_binary_only_the_current_stays(home):
    os.unlink(home.binary_prev)
    unpacked.prune(home)
    assert listing(home) == sorted([CURRENT, f".{CURRENT}_lock", "not-a-build"])


def test_without_proc_nothing_is_removed(home, monkeypatch, tmp_path):
    monkeypatch.setattr(unpacked, "PROC", str(tmp_path / "no-proc"))
    before = listing(home)
    assert unpacked.prune(home) == []
    assert listing(home) == before


def test_not_a_single_file(tmp_path):
    where = Home(str(tmp_path))
    assert unpacked.prune(where) == []  # no unpack folder at all
    with open(where.binary, "w") as f:
        f.write("#!/bin/sh\n")
    assert unpacked.build_id(where.binary) is None
    assert unpacked.build_id(str(tmp_path / "missing")) is None


def test_a_build_being_unpacked_is_left_alone(home):
    """Another process holds shiv's lock of the build while it extracts (the staged
    download's `version` check, say): its half-written folder stays."""
    root = launcher.unpack_root(home.root)
    fresh = "f" * 64
    os.makedirs(os.path.join(root, fresh + ".tmp"))
    with open(os.path.join(root, f".{fresh}_lock"), "w") as lock:
        holder = subprocess.Popen(
            [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1]); "
             "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
             lock.name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        unpacked.prune(home)
        assert {fresh + ".tmp", f".{fresh}_lock"} <= set(listing(home))
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    unpacked.prune(home)
    assert fresh + ".tmp" not in listing(home)


def test_the_staged_next_version_is_kept(home):
    single_file(home.binary_next, OLD)
    unpacked.prune(home)
    assert OLD in listing(home)
