"""The single file's launcher: which interpreters it accepts and how it says no. Real
interpreters run the built file in tests/integration/test_single_file_pythons.py; these
cover the ones this machine does not have."""

import os

import pytest

from wireleap_relay import home, launcher

GOOD = {"implementation": "cpython", "version": (3, 12, 1), "platform": "linux",
        "machine": "x86_64", "bits": 64, "abiflags": "", "libc": "glibc 2.36"}


@pytest.mark.parametrize("version", [(3, 10, 0), (3, 11, 7), (3, 13, 0), (3, 14, 2)])
def test_supported_cpythons(version):
    assert launcher.is_supported(dict(GOOD, version=version))


@pytest.mark.parametrize("change, described", [
    ({"version": (3, 9, 18)}, "CPython 3.9.18 (64-bit) on x86_64 linux with glibc 2.36"),
    ({"version": (3, 15, 0)}, "CPython 3.15.0 (64-bit) on x86_64 linux with glibc 2.36"),
    ({"version": (2, 7, 18), "platform": "linux2"},
     "CPython 2.7.18 (64-bit) on x86_64 linux2 with glibc 2.36"),
    ({"implementation": "pypy", "version": (3, 10, 14)},
     "PyPy 3.10.14 (64-bit) on x86_64 linux with glibc 2.36"),
    ({"implementation": "graalpy"}, "graalpy 3.12.1 (64-bit) on x86_64 linux with glibc 2.36"),
    ({"bits": 32}, "CPython 3.12.1 (32-bit) on x86_64 linux with glibc 2.36"),
    ({"machine": "aarch64"}, "CPython 3.12.1 (64-bit) on aarch64 linux with glibc 2.36"),
    ({"libc": ""}, "CPython 3.12.1 (64-bit) on x86_64 linux with no glibc"),
    ({"libc": "glibc 2.27"}, "CPython 3.12.1 (64-bit) on x86_64 linux with glibc 2.27"),
    ({"abiflags": "t", "version": (3, 13, 0)},
     "CPython (free-threaded) 3.13.0 (64-bit) on x86_64 linux with glibc 2.36"),
    ({"platform": "darwin", "machine": "arm64", "libc": ""},
     "CPython 3.12.1 (64-bit) on arm64 darwin with no glibc"),
])
def test_unsupported_interpreters_are_named(change, described):
    facts = dict(GOOD, **change)
    assert not launcher.is_supported(facts)
    assert launcher.describe(facts) == described


@pytest.mark.parametrize("libc", ["glibc 2.28", "glibc 2.39.9000", "glibc 3.0"])
def test_glibc_versions_from_2_28(libc):
    assert launcher.is_supported(dict(GOOD, libc=libc))


@pytest.mark.parametrize("libc", ["glibc", "glibc x.y", "musl 1.2.4", "glibc 2"])
def test_unreadable_libc_is_refused(libc):
    assert not launcher.is_supported(dict(GOOD, libc=libc))


def test_this_interpreter_is_supported():
    """The test suite runs on a supported CPython: the launcher must agree."""
    facts = launcher.this_interpreter()
    assert facts["implementation"] == "cpython"
    assert launcher.is_supported(facts), launcher.describe(facts)


def test_home_agrees_with_the_relays(tmp_path, monkeypatch):
    """The launcher unpacks into the home the relay itself will use."""
    binary = tmp_path / "wireleap-relay"
    binary.write_bytes(b"")
    link = tmp_path / "elsewhere"
    link.mkdir()
    (link / "wireleap-relay").symlink_to(binary)
    monkeypatch.delenv(home.HOME_ENV, raising=False)
    for argv0 in (str(binary), str(link / "wireleap-relay")):
        monkeypatch.setattr("sys.argv", [argv0])
        assert launcher.home_of(argv0) == home.find_home() == str(tmp_path)
    monkeypatch.setenv(home.HOME_ENV, "relative/home")
    assert launcher.home_of(str(binary)) == home.find_home() == os.path.abspath("relative/home")
    assert launcher.HOME_ENV == home.HOME_ENV
