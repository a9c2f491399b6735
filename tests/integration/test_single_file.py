"""The single-file build: `contrib/build-bin.sh` makes one executable .pyz and its sha512
hash file; copied alone into an empty folder it is a working relay whose home is that
folder, not shiv's unpack cache."""

import os
import shutil
import subprocess

import pytest
from conftest import echo_once, external_missing

from wireleap_relay.home import HOME_ENV
from wireleap_relay.testing.relayproc import RelayProcess, make_home

NAME = "wireleap-relay_linux-amd64"


def run(binary, *args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != HOME_ENV}
    return subprocess.run([str(binary), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=60)


def test_build_yields_one_executable_and_a_checkable_hash(built):
    assert sorted(os.listdir(built)) == [NAME, NAME + ".hash"]
    assert os.access(built / NAME, os.X_OK)
    with open(built / NAME, "rb") as f:
        assert f.readline() == b"#!/usr/bin/env python3\n"
    check = subprocess.run(["sha512sum", "-c", NAME + ".hash"], cwd=built,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == f"{NAME}: OK"


def test_copied_alone_it_inits_its_own_folder(built, tmp_path):
    binary = tmp_path / "wireleap-relay"
    shutil.copy(built / NAME, binary)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    version = run(binary, "version", cwd=elsewhere)
    assert version.returncode == 0
    assert version.stdout.strip().startswith(("0.7.0", "0.7.1-dev."))
    init = run(binary, "init", cwd=elsewhere)
    assert init.returncode == 0, init.stderr
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["elsewhere", "key.pub", "key.seed", "relay-cert.pem", "relay-key.pem",
         "wireleap-relay", "wireleap-relay.lib"])
    assert os.listdir(elsewhere) == []
    check = run(binary, "check-config", cwd=elsewhere)
    assert check.returncode == 1
    assert check.stdout == f"{tmp_path}/config.json: no such file (create it, see the " \
                           "README's Configuration section)\n"
    (tmp_path / "config.json").write_text('{"address": "0.0.0.0:13490", "contracts": {}}')
    check = run(binary, "check-config", cwd=elsewhere)
    assert (check.returncode, check.stdout) == (
        1, "contracts: at least one service contract has to be set\n")


def test_the_built_relay_serves_a_circuit(built, tmp_path, contract, wallet, echo_server):
    relay = make_home(str(tmp_path), "pyz", contract.url, "backing")
    binary = os.path.join(relay.home.root, "wireleap-relay")
    shutil.copy(built / NAME, binary)
    proc = RelayProcess(relay, command=[binary]).start()
    try:
        assert echo_once(proc, wallet, echo_server)
    finally:
        assert proc.stop() == 0  # graceful; the Go relay exits 143 here
    assert "Listening for H/2 requests on https://127.0.0.1:" in proc.log_text()


def test_the_built_relay_daemonizes_in_its_own_folder(built, tmp_path, contract):
    """The README's Running section with the single file: start, status, log, reload,
    stop."""
    relay = make_home(str(tmp_path), "daemon", contract.url, "backing")
    binary = os.path.join(relay.home.root, "wireleap-relay")
    shutil.copy(built / NAME, binary)
    started = run(binary, "start", cwd=tmp_path)
    assert started.returncode == 0, started.stdout + started.stderr
    status = run(binary, "status", cwd=tmp_path)
    assert status.returncode == 0
    assert status.stdout.startswith("wireleap-relay is running, pid ")
    with open(os.path.join(relay.home.root, "wireleap-relay.log")) as f:
        assert "Listening for H/2 requests" in f.read()
    reloaded = run(binary, "reload", cwd=tmp_path)
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
    stopped = run(binary, "stop", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert run(binary, "status", cwd=tmp_path).returncode == 1


def in_own_mount(script: str) -> subprocess.CompletedProcess:
    """`script` in a mount namespace of its own, so its tmpfs goes away with it."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        external_missing("needs root and unshare(1) to mount a small home")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("options, reason", [("size=4m", "No space left on device"),
                                             ("ro", "Read-only file system")])
def test_a_home_it_cannot_unpack_into_gets_one_line(built, tmp_path, options, reason):
    """The libraries unpack into the home: a full or read-only one is said so, and a cut
    unpack leaves no partial folder to fill the disk."""
    home = tmp_path / "home"
    home.mkdir()
    done = in_own_mount(
        f"mount -t tmpfs -o {options} tmpfs {home} && "
        f"WIRELEAP_HOME={home} {built / NAME} version; echo exit $?; "
        f"find {home} -mindepth 1 -printf '%P\\n'; df -k --output=used {home} | tail -1")
    said, listing = done.stdout.split("exit ")[1].split("\n", 1)
    assert said == "1"
    assert done.stderr == (f"wireleap-relay: cannot unpack its libraries into {home}/"
                           f"wireleap-relay.lib: {reason} (it needs about 60 MB there)\n")
    *left, used = listing.split()
    assert all(not name.endswith(".tmp") and "site-packages" not in name for name in left)
    assert int(used) < 64  # KiB: what was unpacked before the disk filled is gone
