"""The single file on every interpreter an operator may have: each supported CPython runs it
as a relay (version, init, check-config, start, a circuit, stop), each other one gets one
line saying what is needed and what was found.

Interpreters: see conftest.interpreter (pyenv, PATH, and a Debian sid chroot for 3.14).
"""

import os
import shutil

import pytest
from conftest import Interpreter, echo_once, external_missing, interpreter, wait_for

from wireleap_relay import launcher
from wireleap_relay.testing.relayproc import make_home

NAME = "wireleap-relay_linux-amd64"
SUPPORTED = ("3.10", "3.11", "3.12", "3.13", "3.14")
UNSUPPORTED = ("2.7", "3.6", "3.7", "3.8", "3.9")


@pytest.mark.parametrize("version", SUPPORTED)
def test_a_supported_python_runs_the_relay(version, built, tmp_path, contract, wallet,
                                           echo_server):
    python = interpreter(version)
    outside, inside = python.folder(tmp_path)
    relay = make_home(outside, "relay", contract.url, "backing")
    binary = os.path.join(inside, "relay", "wireleap-relay")
    shutil.copy(built / NAME, os.path.join(outside, "relay", "wireleap-relay"))

    said = python.run(binary, "version")
    assert (said.returncode, said.stderr) == (0, "")
    assert said.stdout.startswith(("0.7.0", "0.7.1-dev."))
    assert python.run(binary, "check-config").stdout == "OK\n"
    started = python.run(binary, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        assert python.run(binary, "status").stdout.startswith("wireleap-relay is running")
        # A name, not an address: the dial resolves it with c-ares (relay/resolver.py),
        # whose extension must load on this Python.
        assert echo_once(relay, wallet, echo_server.replace("127.0.0.1", "localhost"))
    finally:
        stopped = python.run(binary, "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert wait_for(lambda: python.run(binary, "status").returncode == 1)
    unpacked = os.path.join(outside, "relay", launcher.UNPACKED)
    (build,) = [name for name in os.listdir(unpacked) if not name.startswith(".")]
    extensions = os.listdir(os.path.join(unpacked, build, "site-packages", "greenlet"))
    tag = "cpython-" + version.replace(".", "")
    assert any(name.startswith("_greenlet." + tag) for name in extensions)
    resolvers = os.listdir(os.path.join(unpacked, build, "site-packages", "gevent", "resolver"))
    assert any(name.startswith("cares." + tag) for name in resolvers)


@pytest.mark.parametrize("version", SUPPORTED)
def test_a_supported_python_inits_a_new_home(version, built, tmp_path):
    python = interpreter(version)
    outside, inside = python.folder(tmp_path)
    shutil.copy(built / NAME, os.path.join(outside, "wireleap-relay"))
    init = python.run(os.path.join(inside, "wireleap-relay"), "init")
    assert init.returncode == 0, init.stderr
    assert {"key.seed", "key.pub", "relay-cert.pem", "relay-key.pem"} <= set(os.listdir(outside))


@pytest.mark.parametrize("version", UNSUPPORTED)
def test_an_unsupported_python_gets_one_line(version, built, tmp_path):
    python = interpreter(version)
    shutil.copy(built / NAME, tmp_path / "wireleap-relay")
    said = python.run(str(tmp_path / "wireleap-relay"), "version")
    assert (said.returncode, said.stdout) == (1, "")
    assert said.stderr.count("\n") == 1
    assert said.stderr.startswith(launcher.NEEDS + "; this is CPython " + version + ".")
    assert "(64-bit) on x86_64 linux" in said.stderr
    assert os.listdir(tmp_path) == ["wireleap-relay"]  # nothing unpacked


def test_pypy_gets_one_line(built, tmp_path):
    pypy = shutil.which("pypy3")
    if pypy is None:
        external_missing("pypy3 is not installed (Debian's pypy3 package)")
    shutil.copy(built / NAME, tmp_path / "wireleap-relay")
    said = Interpreter("pypy", (pypy,)).run(str(tmp_path / "wireleap-relay"), "version")
    assert (said.returncode, said.stdout) == (1, "")
    assert said.stderr.startswith(launcher.NEEDS + "; this is PyPy 3.")
    assert said.stderr.count("\n") == 1
