"""Self-upgrade of the single-file relay, for real: releases A and B built by
contrib/release.sh and signed with a throwaway gpg key made here, a local HTTP server
publishing them, relays as real processes in their own homes, and a fake contract whose
directory announces the version to upgrade to (operations.md §3.8, §3.9, §6)."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gevent
import pytest
import requests
from conftest import ROOT, KeepConnecting, interpreter, slow_download, wait_for

from wireleap_relay import launcher, pidfile
from wireleap_relay.home import HOME_ENV
from wireleap_relay.testing import circuit
from wireleap_relay.testing.fake_contract import FakeContract
from wireleap_relay.testing.notifysocket import NotifySocket
from wireleap_relay.testing.relayproc import make_home
from wireleap_relay.testing.servicekey import Wallet
from wireleap_relay.upgrade import unpacked
from wireleap_relay.wire import b64

ARTIFACT = "wireleap-relay_linux-amd64"
MiB = 1 << 20
A, B, C = "0.7.1", "0.7.2", "0.7.3"  # C: a signed release whose daemon cannot start
NOT_SUPPORTED = "Your wireleap-relay binary does not support upgrades (manual build?), " \
                "aborting."


# --- a release server, signing keys and the releases ---------------------------------------

class ReleaseServer:
    """Serves the files under `root` (switched per test); `faults` maps a URL path to
    "500" or "cut" (the connection closes halfway through the body)."""

    def __init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fault = outer.faults.get(self.path)
                path = os.path.join(outer.root, self.path.lstrip("/"))
                if fault == "500":
                    self.send_error(500)
                elif not os.path.isfile(path):
                    self.send_error(404)
                else:
                    with open(path, "rb") as f:
                        data = f.read()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[:len(data) // 2] if fault == "cut" else data)
                    if fault == "cut":
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.root = ""
        self.faults: dict[str, str] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def publish(self, root, **faults: str) -> None:
        self.root = str(root)
        self.faults = faults


@pytest.fixture(scope="module")
def server():
    srv = ReleaseServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture(scope="module")
def published(tmp_path_factory, gpg, server):
    """A and B as `make release` makes them, side by side in one published tree."""
    tree = tmp_path_factory.mktemp("published")
    changelogs = tmp_path_factory.mktemp("changelogs")
    for version in (A, B):
        (changelogs / f"{version}.md").write_text(f"# {version}\n\n- what changed in {version}\n")
    env = dict(os.environ, GNUPGHOME=gpg.home, WIRELEAP_RELEASE_KEY=gpg.release,
               WIRELEAP_RELEASE_URL=server.url, WIRELEAP_CHANGELOG_DIR=str(changelogs))
    builds = [subprocess.Popen([os.path.join(ROOT, "contrib", "release.sh"), str(tree)],
                               env=dict(env, WIRELEAP_VERSION=v), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
              for v in (A, B)]
    for build in builds:
        output = build.communicate(timeout=300)[0].decode()
        assert build.returncode == 0, output
    return tree


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    contract = FakeContract(str(tmp_path_factory.mktemp("contract")), upgrade_version=B).start()
    yield contract
    contract.stop()


def announce(fake, version: str) -> None:
    requests.post(fake.url + "/_fake/upgrade", json={"relay": version}, timeout=10)


# --- relays installed from a release --------------------------------------------------------

class Installed:
    """A relay home whose `wireleap-relay` came from a release file."""

    def __init__(self, root, name, fake, binary, gpg, python: tuple[str, ...] = (),
                 **env: str) -> None:
        self.relay = make_home(str(root), name, fake.url, "backing")
        self.home = self.relay.home
        shutil.copy(binary, self.home.binary)
        # The test keyring trusts the rogue key too: the relay must not look at it.
        self.env = {k: v for k, v in os.environ.items() if k != HOME_ENV}
        self.python = python  # run the file with this interpreter, not its #! line
        self.env.update(GNUPGHOME=gpg.home, WIRELEAP_RETRY_PAUSE="0.1",
                        **env)

    def run(self, *args: str, answer: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([*self.python, self.home.binary, *args], input=answer,
                              capture_output=True, text=True, env=self.env,
                              cwd=self.home.root, timeout=240)

    def start(self) -> int:
        started = self.run("start")
        assert started.returncode == 0, started.stdout + started.stderr
        return self.pid()

    def pid(self) -> int:
        with open(self.home.pid_file) as f:
            return int(f.read())

    def stop(self) -> None:
        if os.path.exists(self.home.pid_file):
            self.run("stop")

    def answers_ping(self) -> bool:
        pool = circuit.ConnectionPool()
        try:
            return circuit.ping(self.relay.address, pool=pool).origin == \
                b64.encode(self.relay.pubkey)
        finally:
            pool.close()

    def snapshot(self) -> dict[str, str]:
        """sha256 of every upgrade-relevant file in the home."""
        names = ("wireleap-relay", "wireleap-relay.next", "wireleap-relay.prev",
                 "config.json", "config.json.next", "config.json.prev")
        return {n: sha256(os.path.join(self.home.root, n)) for n in names
                if os.path.exists(os.path.join(self.home.root, n))}

    @property
    def unpacked(self) -> str:
        return launcher.unpack_root(self.home.root)

    def unpacked_builds(self) -> set[str]:
        return {name for name in os.listdir(self.unpacked) if not name.startswith(".")}

    def log(self) -> str:
        with open(self.home.log_file, errors="replace") as f:
            return f.read()


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def install(tmp_path, fake, gpg):
    made = []

    def make(binary, name="relay", python: tuple[str, ...] = (), **env: str) -> Installed:
        relay = Installed(tmp_path, name, fake, binary, gpg, python, **env)
        made.append(relay)
        return relay
    yield make
    for relay in made:
        relay.stop()


def release_file(published, version: str, name: str = ARTIFACT):
    return published / f"v{version}" / name


# --- the release files, checked the README's way --------------------------------------------

def test_release_files_check_as_the_readme_says(published):
    folder = release_file(published, B, "")
    assert sorted(os.listdir(folder)) == sorted(
        [ARTIFACT, f"{ARTIFACT}.hash", "wireleap-relay-release-key.asc"])
    assert (published / "changelogs" / f"{B}.md").exists()
    env = dict(os.environ, GNUPGHOME=tempfile.mkdtemp(prefix="wl-operator-"))

    def run(*command: str) -> subprocess.CompletedProcess:
        result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        return result
    try:
        run("gpg", "--batch", "--import", "wireleap-relay-release-key.asc")
        verified = run("gpg", "--batch", "--verify", f"{ARTIFACT}.hash")
        assert 'Good signature from "Relay Release Test <release@example.invalid>"' in \
            verified.stderr
        assert run("sha512sum", "-c", f"{ARTIFACT}.hash").stdout == f"{ARTIFACT}: OK\n"
        assert run("sha256sum", "-c", f"{ARTIFACT}.hash").stdout == f"{ARTIFACT}: OK\n"
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)
        shutil.rmtree(env["GNUPGHOME"], ignore_errors=True)


# --- the whole way: A to B, then rollback to A ----------------------------------------------

def test_upgrade_to_b_then_rollback_to_a(published, server, fake, install, source_server,
                                         echo_server):
    """Under load: a transfer runs across the switch and new circuits keep being opened;
    none is refused or cut."""
    announce(fake, B)
    server.publish(published)
    relay = install(release_file(published, A))
    old_pid = relay.start()
    before = relay.snapshot()
    # An older version's unpacked libraries, left from an earlier upgrade.
    os.makedirs(os.path.join(relay.unpacked, "0" * 64, "site-packages", "gevent"))
    config_bytes = open(relay.home.config, "rb").read()
    wallet = Wallet(fake.url)
    transfer = slow_download(relay.relay, wallet, source_server, 64 * MiB)
    prober = KeepConnecting(relay.relay, wallet, echo_server)

    upgraded = relay.run("upgrade", answer="y\n")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    gevent.sleep(1.0)  # circuits through the new version's workers too
    prober.assert_none_failed()
    assert transfer.get(timeout=120) == 64 * MiB
    out = upgraded.stdout
    assert f"Changelog for version {B}:\n# {B}\n\n- what changed in {B}\n" in out
    assert f"Proceed with upgrade from {A} to {B}? (y/N) " in out
    assert f"Downloading {server.url}/v{B}/{ARTIFACT}.hash to " in out
    assert "Good signature from [Relay Release Test <release@example.invalid>]" in out
    assert out.endswith(f"wireleap-relay successfully upgraded to version {B} (was {A}).\n\n"
                        f"NOTE: The old ({A}) binary can be restored:\n"
                        f"cd {relay.home.root} && ./wireleap-relay rollback\n")
    assert "the new wireleap-relay answers PING" in upgraded.stderr

    after = relay.snapshot()
    assert after == {"wireleap-relay": sha256(release_file(published, B)),
                     "wireleap-relay.prev": before["wireleap-relay"],
                     "config.json": before["config.json"],
                     "config.json.prev": before["config.json"]}
    assert not os.path.exists(relay.home.quarantine)
    new_pid = relay.pid()
    assert new_pid != old_pid and pidfile.alive(new_pid)
    assert wait_for(lambda: not pidfile.alive(old_pid))  # handed over, then retired
    assert relay.run("version").stdout == f"{B}\n"
    assert relay.answers_ping()
    build_a, build_b = (unpacked.build_id(release_file(published, v)) for v in (A, B))
    assert relay.unpacked_builds() == {build_a, build_b}  # A stays for `rollback`

    rolled = relay.run("rollback")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert relay.snapshot() == before
    assert open(relay.home.config, "rb").read() == config_bytes
    assert relay.run("version").stdout == f"{A}\n"
    assert not pidfile.alive(new_pid) and pidfile.alive(relay.pid())
    assert relay.answers_ping()
    assert relay.unpacked_builds() == {build_a}
    # Otherwise the next heartbeat's notice would bring B straight back.
    assert open(os.path.join(relay.home.root, ".skip-upgrade-version")).read() == f'"{B}"'


def test_upgrade_and_rollback_with_the_operators_python(published, server, fake, install,
                                                       tmp_path):
    """The host's `python3` is too old, so the operator runs the file with python3.12:
    the upgrade runs the new version, and the rollback the old one, with that one too."""
    chosen, too_old = interpreter("3.12"), interpreter("3.9")
    old_bin = tmp_path / "old-python-bin"
    old_bin.mkdir()
    (old_bin / "python3").symlink_to(too_old.command[0])
    announce(fake, B)
    server.publish(published)
    relay = install(release_file(published, A), python=chosen.command,
                    PATH=f"{old_bin}{os.pathsep}{os.environ['PATH']}")
    assert "CPython 3.9" in subprocess.run([relay.home.binary, "version"], env=relay.env,
                                           capture_output=True, text=True).stderr
    relay.start()
    upgraded = relay.run("upgrade", answer="y\n")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert relay.run("version").stdout == f"{B}\n"
    assert relay.answers_ping()
    rolled = relay.run("rollback")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert relay.run("version").stdout == f"{A}\n"
    assert relay.answers_ping()


# --- refusals: the running relay is left as it was ------------------------------------------

@pytest.fixture(scope="module")
def running_a(tmp_path_factory, published, fake, gpg):
    """One relay running A for all the refusals."""
    relay = Installed(tmp_path_factory.mktemp("refusals"), "relay", fake,
                      release_file(published, A), gpg)
    relay.start()
    yield relay
    relay.stop()


def tampered_tree(tmp_path, published, change) -> str:
    tree = tmp_path / "tree"
    shutil.copytree(published, tree)
    change(tree / f"v{B}")
    return tree


def sign_plain(gpg, key: str, binary) -> bytes:
    digest = hashlib.sha512(open(binary, "rb").read()).hexdigest()
    return gpg.clearsign(f"wireleap-relay {B}\n\n      {digest}  {ARTIFACT}\n".encode(), key)


def flip_hash_digit(folder) -> None:
    path = folder / f"{ARTIFACT}.hash"
    text = path.read_text()
    line = next(li for li in text.splitlines() if li.endswith(f"  {ARTIFACT}") and
                len(li.split()[0]) == 128)
    digit = line.strip()[0]
    path.write_text(text.replace(line, line.replace(digit, "0" if digit != "0" else "1", 1)))


def flip_binary_byte(folder) -> None:
    data = bytearray((folder / ARTIFACT).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / ARTIFACT).write_bytes(bytes(data))


def truncate_binary(folder) -> None:
    data = (folder / ARTIFACT).read_bytes()
    (folder / ARTIFACT).write_bytes(data[:len(data) // 2])


def plain_hash_file(folder) -> None:
    digest = hashlib.sha512((folder / ARTIFACT).read_bytes()).hexdigest()
    (folder / f"{ARTIFACT}.hash").write_text(f"{digest}  {ARTIFACT}\n")


def older_release(folder) -> None:
    """A's signed files published as B: a valid signature, a matching hash, the wrong
    version (a replay of an older release)."""
    source = folder.parent / f"v{A}"
    for name in (ARTIFACT, f"{ARTIFACT}.hash"):
        shutil.copy(source / name, folder / name)


def remove_binary(folder) -> None:
    os.unlink(folder / ARTIFACT)


def rogue_signature(gpg):
    def change(folder) -> None:
        (folder / f"{ARTIFACT}.hash").write_bytes(sign_plain(gpg, gpg.rogue, folder / ARTIFACT))
    return change


HASH_FAILED = f"downloading or verifying new wireleap-relay {B} .hash file failed: "
BINARY_FAILED = f"downloading or verifying new wireleap-relay {B} binary failed: "
HASH_URL = f"{{url}}/v{B}/{ARTIFACT}.hash"
BINARY_URL = f"{{url}}/v{B}/{ARTIFACT}"


@pytest.mark.parametrize("change,faults,expected", [
    (flip_hash_digit, {},
     HASH_FAILED + "BAD signature on {hash}: its text was changed after it was signed"),
    (rogue_signature, {},
     HASH_FAILED + "{hash} is signed by key {rogue}, which is not the release key pinned in "
                   "this binary"),
    (None, {f"/v{B}/{ARTIFACT}.hash": "500"},
     HASH_FAILED + HASH_URL + " download request returned code 500: Internal Server Error"),
    (plain_hash_file, {}, HASH_FAILED + "{hash} is not a clear-signed text"),
    (flip_binary_byte, {}, BINARY_FAILED + "hash mismatch: expected "),
    (truncate_binary, {}, BINARY_FAILED + "hash mismatch: expected "),
    (remove_binary, {},
     BINARY_FAILED + BINARY_URL + " download request returned code 404: Not Found"),
    (None, {f"/v{B}/{ARTIFACT}": "cut"}, BINARY_FAILED + "downloading " + BINARY_URL + " failed"),
    (older_release, {},
     BINARY_FAILED + "the new binary {binary} is version '" + A + "', not " + B),
], ids=["bad-signature", "other-key", "hash-500", "not-clearsigned", "hash-mismatch",
        "truncated", "binary-404", "cut-mid-download", "older-release-replayed"])
def test_refused_upgrade_leaves_the_relay_running(tmp_path, gpg, published, server, fake,
                                                  running_a, change, faults, expected):
    announce(fake, B)
    if change is rogue_signature:
        change = rogue_signature(gpg)
    server.publish(tampered_tree(tmp_path, published, change) if change else published,
                   **faults)
    pid = running_a.pid()
    before = running_a.snapshot()

    result = running_a.run("upgrade", answer="y\n")
    assert result.returncode == 1
    quarantine = running_a.home.quarantine
    message = "error: " + expected.format(url=server.url, rogue=gpg.rogue[-16:],
                                          hash=f"{quarantine}/wireleap-relay.hash",
                                          binary=f"{quarantine}/wireleap-relay")
    assert message in result.stderr
    assert "successfully upgraded" not in result.stdout
    assert running_a.snapshot() == before
    assert running_a.pid() == pid and pidfile.alive(pid)
    assert running_a.run("version").stdout == f"{A}\n"
    assert running_a.answers_ping()


@pytest.mark.parametrize("answer,tail", [
    ("n\n", "OK, aborting.\n"),
    ("", "OK, aborting.\n"),  # end of input declines
    ("maybe\nperhaps\nsure\n",
     "Response 'maybe' not understood. Proceed with upgrade from 0.7.1 to 0.7.2? (y/N) "
     "Response 'perhaps' not understood. Proceed with upgrade from 0.7.1 to 0.7.2? (y/N) "
     "Response 'sure' not understood. Failed to get an answer 3 times. Aborting.\n"),
])
def test_not_confirmed_nothing_changes(published, server, fake, running_a, answer, tail):
    announce(fake, B)
    server.publish(published)
    pid = running_a.pid()
    before = running_a.snapshot()
    result = running_a.run("upgrade", answer=answer)
    assert result.returncode == 1
    assert result.stdout.endswith(f"Proceed with upgrade from {A} to {B}? (y/N) {tail}")
    assert running_a.snapshot() == before
    assert running_a.pid() == pid and pidfile.alive(pid)
    if tail == "OK, aborting.\n":
        assert not os.path.exists(running_a.home.quarantine)


def test_one_upgrade_or_rollback_at_a_time(published, server, fake, running_a):
    """While another upgrade holds the home's lock (an automatic one, say), a manual
    `upgrade` or `rollback` refuses and changes nothing."""
    announce(fake, B)
    server.publish(published)
    before = running_a.snapshot()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
         running_a.home.path(".upgrade.lock")], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        for command in ("upgrade", "rollback"):
            refused = running_a.run(command, answer="y\n")
            assert refused.returncode == 1
            assert "another upgrade or rollback of this relay is in progress" in \
                refused.stderr
            assert running_a.snapshot() == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert running_a.answers_ping()


def test_up_to_date(published, server, fake, running_a):
    announce(fake, A)
    server.publish(published)
    result = running_a.run("upgrade")
    assert (result.returncode, result.stdout) == (
        0, f"Your wireleap-relay is up to date (version {A}, {A} available), nothing to do.\n")


def test_a_custom_build_does_not_upgrade(built, fake, install):
    announce(fake, B)
    relay = install(built / ARTIFACT)
    result = relay.run("upgrade", answer="y\n")
    assert (result.returncode, result.stdout) == (1, NOT_SUPPORTED + "\n")
    assert not os.path.exists(relay.home.quarantine)


# --- a new version that cannot start: automatic rollback ------------------------------------

def broken_release(published, tree, gpg) -> None:
    """C: B's binary with version C whose daemon exits at start, signed with the release key.
    A new shiv build id, or shiv would reuse B's unpacked files."""
    source = release_file(published, B)
    folder = tree / f"v{C}"
    folder.mkdir(parents=True)
    target = folder / ARTIFACT
    with open(source, "rb") as f:
        shebang = f.readline()
    with zipfile.ZipFile(source) as old, open(target, "wb") as out:
        out.write(shebang)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as new:
            for info in old.infolist():
                data = old.read(info)
                if info.filename == "environment.json":
                    env = json.loads(data)
                    env["build_id"] = hashlib.sha256(env["build_id"].encode() + b"C").hexdigest()
                    data = json.dumps(env).encode()
                elif info.filename == "site-packages/wireleap_relay/_build.py":
                    data = data.replace(f"VERSION = '{B}'".encode(), f"VERSION = '{C}'".encode())
                    data += (b"import sys\nif sys.argv[1:3] == ['start', '--fg']:\n"
                             b"    sys.exit('this release cannot start (test)')\n")
                new.writestr(info, data)
    os.chmod(target, 0o755)
    digest = hashlib.sha512(target.read_bytes()).hexdigest()
    (folder / f"{ARTIFACT}.hash").write_bytes(gpg.clearsign(
        f"wireleap-relay {C}\n\n      {digest}  {ARTIFACT}\n".encode(), gpg.release))


def test_new_version_that_cannot_start_is_rolled_back_and_skipped(tmp_path, gpg, published,
                                                                   server, fake, install):
    tree = tmp_path / "tree"
    shutil.copytree(published, tree)
    broken_release(published, tree, gpg)
    server.publish(tree)
    announce(fake, C)
    relay = install(release_file(published, A))
    old_pid = relay.start()
    before = relay.snapshot()

    result = relay.run("upgrade", answer="y\n")
    assert result.returncode == 1
    assert "this release cannot start (test)" in result.stdout + result.stderr
    assert "handling upgrade failure..." in result.stderr
    assert "restoring old binary..." in result.stderr
    assert "aborted supervised upgrade due to the above errors" in result.stderr
    assert f"error: the upgrade to {C} did not complete" in result.stderr
    assert relay.snapshot() == before
    assert relay.run("version").stdout == f"{A}\n"
    assert relay.pid() == old_pid and pidfile.alive(old_pid)  # it never stopped serving
    assert relay.answers_ping()
    assert open(os.path.join(relay.home.root, ".skip-upgrade-version")).read() == f'"{C}"'


# --- automatic upgrades from the heartbeat's notice -----------------------------------------

@pytest.fixture
def notify():
    sock = NotifySocket()
    yield sock
    sock.close()


def test_automatic_upgrade_on_notice(published, server, fake, install, notify):
    """Under systemd (a stand-in for its $NOTIFY_SOCKET here) the new version's master
    names itself the main process: systemd follows the upgrade."""
    announce(fake, A)  # nothing to do at first
    server.publish(published)
    relay = install(release_file(published, A), WIRELEAP_HEARTBEAT_INTERVAL="0.5",
                    **notify.env)
    old_pid = relay.start()
    assert notify.expect("MAINPID", str(old_pid)).sender == old_pid
    before = relay.snapshot()
    announce(fake, B)
    assert wait_for(lambda: "wireleap-relay upgraded to 0.7.2" in relay.log(), timeout=120), \
        "the upgrade"
    log = relay.log()
    for line in (f"Received new update notification for version {B}.",
                 f"Changelog:\n# {B}\n\n- what changed in {B}\n",
                 f"Upgrading to version {B}...",
                 "Good signature from [Relay Release Test <release@example.invalid>]",
                 "the new wireleap-relay answers PING"):
        assert line in log
    assert relay.snapshot()["wireleap-relay"] == sha256(release_file(published, B))
    assert relay.snapshot()["wireleap-relay.prev"] == before["wireleap-relay"]
    assert pidfile.alive(relay.pid())
    handed = notify.expect("MAINPID", str(relay.pid()))
    assert (handed.sender, handed.fields["READY"]) == (relay.pid(), "1")
    assert wait_for(lambda: not pidfile.alive(old_pid))  # handed over, then retired
    assert relay.answers_ping()


def test_automatic_upgrade_refused_is_skipped(tmp_path, published, server, fake, install):
    server.publish(tampered_tree(tmp_path, published, flip_hash_digit))
    announce(fake, B)
    relay = install(release_file(published, A), WIRELEAP_HEARTBEAT_INTERVAL="0.5")
    pid = relay.start()
    before = relay.snapshot()
    skip = os.path.join(relay.home.root, ".skip-upgrade-version")
    assert wait_for(lambda: os.path.exists(skip), timeout=120), "the skip file"
    assert open(skip).read() == f'"{B}"'
    assert f"Could not upgrade to new wireleap-relay version {B}: " in relay.log()
    assert relay.snapshot() == before
    assert relay.pid() == pid and pidfile.alive(pid)
