"""Crash-safe writes (fsutil) and the pending sharetoken store (wire.md §4.6, §4.7)."""

import json
import os
import stat
import subprocess
import sys
import threading
import time

import gevent
import nacl.signing
import pytest

from wireleap_relay import fsutil, libc
from wireleap_relay.tokens.commit import GroupCommit
from wireleap_relay.tokens.store import DuplicateSharetoken, TokenStore
from wireleap_relay.wire import b64
from wireleap_relay.wire.sharetoken import ContractData, Sharetoken

with open(os.path.join(os.path.dirname(__file__), os.pardir, "data",
                       "sharetoken_vectors.json")) as _f:
    V = json.load(_f)

VECTOR = Sharetoken.from_dict(json.loads(V["sharetoken"]["json"]))
CONTRACT_KEY = nacl.signing.SigningKey(bytes.fromhex(V["inputs"]["contract_seed_hex"]))
SERVICEKEY = nacl.signing.SigningKey(bytes.fromhex(V["inputs"]["servicekey_seed_hex"]))


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def fresh_token(nonce):
    return Sharetoken.mint(SERVICEKEY, VECTOR.relay_pubkey, VECTOR.contract, 1700000000, nonce)


# --- write_atomic --------------------------------------------------------------------------

def test_write_atomic_creates_and_replaces(tmp_path):
    path = str(tmp_path / "f.json")
    fsutil.write_atomic(path, b"one")
    assert open(path, "rb").read() == b"one"
    assert mode(path) == 0o644
    fsutil.write_atomic(path, b"two", mode=0o600)
    assert open(path, "rb").read() == b"two"
    assert mode(path) == 0o600
    assert os.listdir(tmp_path) == ["f.json"]


def test_write_atomic_mode_ignores_umask(tmp_path):
    old = os.umask(0o077)
    try:
        fsutil.write_atomic(str(tmp_path / "pub"), b"x", mode=0o644)
    finally:
        os.umask(old)
    assert mode(tmp_path / "pub") == 0o644


def test_write_atomic_keeps_old_content_on_failure(tmp_path, monkeypatch):
    path = str(tmp_path / "key.seed")
    fsutil.write_atomic(path, b"old", mode=0o600)

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        fsutil.write_atomic(path, b"new content")
    monkeypatch.undo()
    assert open(path, "rb").read() == b"old"
    assert mode(path) == 0o600
    assert os.listdir(tmp_path) == ["key.seed"]


def test_write_atomic_keeps_old_content_when_rename_fails(tmp_path, monkeypatch):
    path = str(tmp_path / "f")
    fsutil.write_atomic(path, b"old")

    def broken_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(PermissionError):
        fsutil.write_atomic(path, b"new")
    monkeypatch.undo()
    assert open(path, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_write_atomic_bad_data_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        fsutil.write_atomic(str(tmp_path / "f"), "not bytes")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_write_atomic_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        fsutil.write_atomic(str(tmp_path / "no" / "f"), b"x")


# --- create_exclusive ----------------------------------------------------------------------

def test_create_exclusive(tmp_path):
    path = str(tmp_path / "t.json")
    assert fsutil.create_exclusive(path, b"first") is True
    assert mode(path) == 0o644
    assert fsutil.create_exclusive(path, b"second") is False
    assert open(path, "rb").read() == b"first"
    assert os.listdir(tmp_path) == ["t.json"]


def test_a_temp_file_left_by_a_crash_under_the_same_pid_is_skipped(tmp_path):
    """Temp names are `.<name>.<pid>.<n>`: a crashed process whose pid came back may have
    left the very next one; it is stepped over, not reused or failed on."""
    path = tmp_path / "t"
    upcoming = next(fsutil._temp_numbers) + 1
    leftover = tmp_path / f".t.{os.getpid()}.{upcoming}"
    leftover.write_bytes(b"a crash's")
    assert fsutil.create_exclusive(str(path), b"x") is True
    assert path.read_bytes() == b"x" and leftover.read_bytes() == b"a crash's"
    assert sorted(os.listdir(tmp_path)) == [leftover.name, "t"]
    assert next(fsutil._temp_numbers) == upcoming + 2  # that name was tried, then the next


def test_create_exclusive_mode(tmp_path):
    path = str(tmp_path / "t")
    assert fsutil.create_exclusive(path, b"x", mode=0o600) is True
    assert mode(path) == 0o600


def test_create_exclusive_does_not_replace_other_files(tmp_path):
    path = tmp_path / "t"
    path.write_bytes(b"operator's")
    assert fsutil.create_exclusive(str(path), b"x") is False
    assert path.read_bytes() == b"operator's"
    assert os.listdir(tmp_path) == ["t"]


def test_create_exclusive_failure_leaves_no_temp(tmp_path, monkeypatch):
    def broken_link(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", broken_link)
    with pytest.raises(PermissionError):
        fsutil.create_exclusive(str(tmp_path / "t"), b"x")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_fsync_dir(tmp_path):
    fsutil.fsync_dir(str(tmp_path))
    with pytest.raises(NotADirectoryError):
        (tmp_path / "f").write_text("")
        fsutil.fsync_dir(str(tmp_path / "f"))


# --- the store -----------------------------------------------------------------------------

def test_store_layout(tmp_path):
    root = tmp_path / "sharetokens"
    store = TokenStore(str(root))
    store.accept(VECTOR)
    contract_dir = root / V["keys"]["contract_public_key"]
    path = contract_dir / (V["sharetoken"]["signature"] + ".json")
    assert store.path_for(VECTOR) == str(path)
    assert path.read_text() == V["sharetoken"]["json"]
    assert mode(path) == 0o644
    assert os.listdir(root) == [V["keys"]["contract_public_key"]]
    assert os.listdir(contract_dir) == [path.name]  # no temp files left behind


def test_store_rejects_duplicate(tmp_path):
    store = TokenStore(str(tmp_path))
    store.accept(VECTOR)
    with pytest.raises(DuplicateSharetoken) as info:
        store.accept(VECTOR)
    assert str(info.value) == "duplicate sharetoken"
    assert open(store.path_for(VECTOR)).read() == V["sharetoken"]["json"]


def test_duplicate_detected_across_store_instances(tmp_path):
    TokenStore(str(tmp_path)).accept(VECTOR)
    with pytest.raises(DuplicateSharetoken):
        TokenStore(str(tmp_path)).accept(VECTOR)


def test_store_accepts_different_tokens(tmp_path):
    store = TokenStore(str(tmp_path))
    first, second = fresh_token("a" * 32), fresh_token("b" * 32)
    store.accept(first)
    store.accept(second)
    folder = tmp_path / b64.encode(VECTOR.contract.public_key)
    assert sorted(os.listdir(folder)) == sorted([first.signature_b64 + ".json",
                                                 second.signature_b64 + ".json"])


def test_store_one_folder_per_contract(tmp_path):
    other = ContractData.sign(nacl.signing.SigningKey(bytes(32)), 1700003600, 1700007200)
    tok = Sharetoken.mint(SERVICEKEY, VECTOR.relay_pubkey, other, 1700000000, "c" * 32)
    store = TokenStore(str(tmp_path))
    store.accept(VECTOR)
    store.accept(tok)
    assert sorted(os.listdir(tmp_path)) == sorted([V["keys"]["contract_public_key"],
                                                   b64.encode(other.public_key)])


@pytest.fixture
def link_rendezvous(monkeypatch):
    """Hold every link(2) until all racers have their temp file written, so the threads
    (greenlets under the test's gevent patching) really meet at the exclusive step."""
    real_link = os.link
    arrived = []

    def link(src, dst):
        arrived.append(src)
        for _ in range(10_000):
            if len(arrived) >= 8:
                break
            time.sleep(0.001)  # yields to the other threads
        return real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    return arrived


def test_racing_threads_exactly_one_wins(tmp_path, link_rendezvous):
    store = TokenStore(str(tmp_path))
    barrier = threading.Barrier(8)
    outcomes = []
    lock = threading.Lock()

    def worker():
        barrier.wait()
        try:
            store.accept(VECTOR)
            result = "accepted"
        except DuplicateSharetoken:
            result = "duplicate"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["accepted"] + ["duplicate"] * 7
    assert len(set(link_rendezvous)) == 8  # all eight temp files existed at the same time
    folder = tmp_path / V["keys"]["contract_public_key"]
    assert os.listdir(folder) == [V["sharetoken"]["signature"] + ".json"]
    assert (folder / os.listdir(folder)[0]).read_text() == V["sharetoken"]["json"]


RACER = """
import json, os, sys, time
from wireleap_relay.tokens.store import DuplicateSharetoken, TokenStore
from wireleap_relay.wire.sharetoken import Sharetoken
root, token, go = sys.argv[1], Sharetoken.from_dict(json.loads(sys.argv[2])), sys.argv[3]
while not os.path.exists(go):
    time.sleep(0.001)
try:
    TokenStore(root).accept(token)
    print("accepted")
except DuplicateSharetoken:
    print("duplicate")
"""


def test_racing_processes_exactly_one_wins(tmp_path):
    """What workers do: separate processes storing the same token at the same moment."""
    go = tmp_path / "go"
    source = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    token = fresh_token("race-between-processes").to_json()
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / "st"), token,
                                str(go)], stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=source))
              for _ in range(6)]
    time.sleep(0.5)  # let them all start and wait at the line
    go.touch()
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in racers)
    assert outcomes == ["accepted"] + ["duplicate"] * 5


def test_contract_urls_are_remembered_beside_the_store(tmp_path):
    store = TokenStore(str(tmp_path / "sharetokens"))
    assert store.known_urls() == {}
    store.remember_urls({b"\x01" * 32: "https://one.example"})
    store.remember_urls({b"\x02" * 32: "https://two.example"})
    assert store.remember_urls({b"\x01" * 32: "https://one.example/moved"}) == {
        b"\x01" * 32: "https://one.example/moved", b"\x02" * 32: "https://two.example"}
    assert store.known_urls() == {b"\x01" * 32: "https://one.example/moved",
                                  b"\x02" * 32: "https://two.example"}
    assert os.listdir(tmp_path) == ["sharetokens.contracts.json"]  # never inside the store


def test_unreadable_contract_urls_are_no_urls(tmp_path):
    store = TokenStore(str(tmp_path / "sharetokens"))
    for junk in (b"", b"[1, 2]", b'{"not base64!": "x"}', b"\xff"):
        with open(store.urls_file, "wb") as f:
            f.write(junk)
        assert store.known_urls() == {}


def test_only_old_temp_files_are_leftovers(tmp_path):
    store = TokenStore(str(tmp_path))
    folder = tmp_path / "contract"
    folder.mkdir()
    old, fresh, token = (folder / ".a.json.1", folder / ".b.json.2", folder / "c.json")
    for path in (old, fresh, token):
        path.write_text("{}")
    os.utime(old, (1000, 1000))
    os.utime(token, (1000, 1000))  # a real token is never a leftover, however old
    assert store.remove_leftovers(now=1000 + 3601) == [str(old)]
    assert sorted(os.listdir(folder)) == [".b.json.2", "c.json"]


# --- several tokens at once (group commit) -------------------------------------------------

def stored(store):
    return sorted(os.path.basename(p) for p in store.pending())


def test_accept_many_stores_each_token_once_and_names_duplicates(tmp_path):
    store = TokenStore(str(tmp_path))
    a, b, c = fresh_token("a" * 32), fresh_token("b" * 32), fresh_token("c" * 32)
    store.accept(c)
    failures = store.accept_many([a, b, a, c])
    assert failures[:2] == [None, None]
    assert [type(f) for f in failures[2:]] == [DuplicateSharetoken] * 2
    assert stored(store) == sorted(t.signature_b64 + ".json" for t in (a, b, c))
    with open(store.path_for(b)) as f:
        assert Sharetoken.from_dict(json.load(f)) == b
    folder = os.path.dirname(store.path_for(a))
    assert [n for n in os.listdir(folder) if n.startswith(".")] == []  # no temp files


def test_accept_many_keeps_going_past_a_token_it_cannot_write(tmp_path, monkeypatch):
    store = TokenStore(str(tmp_path))
    good, bad = fresh_token("d" * 32), fresh_token("e" * 32)
    real = fsutil._written_temp

    def disk_full_for_bad(path, data, mode):
        if path == store.path_for(bad):
            raise OSError(28, "No space left on device")
        return real(path, data, mode)

    monkeypatch.setattr(fsutil, "_written_temp", disk_full_for_bad)
    failures = store.accept_many([bad, good])
    assert isinstance(failures[0], OSError) and failures[0].errno == 28
    assert failures[1] is None
    assert stored(store) == [good.signature_b64 + ".json"]


def test_several_tokens_share_one_flush_and_one_is_fsynced(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(fsutil, "_syncfs", lambda fd: calls.append("syncfs"))
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    store = TokenStore(str(tmp_path / "store"))
    store.accept(fresh_token("0" * 32))  # makes the folders first
    calls.clear()
    assert store.accept_many([fresh_token(f"{i:032x}") for i in range(1, 21)]) == [None] * 20
    # The files written out together, each then checked (cheap once written), then their
    # one folder.
    assert calls == ["syncfs"] + ["fsync"] * 20 + ["fsync"]
    calls.clear()
    store.accept(fresh_token("f" * 32))
    assert calls == ["fsync", "fsync"]  # one file, then its folder


def test_syncfs_really_runs_and_its_absence_is_no_failure(tmp_path, monkeypatch):
    store = TokenStore(str(tmp_path))
    assert store.accept_many([fresh_token(f"{i:032x}") for i in range(3)]) == [None] * 3
    monkeypatch.setattr(libc, "function", lambda name: None)  # a libc without syncfs
    assert store.accept_many([fresh_token(f"{i:032x}") for i in range(3, 6)]) == [None] * 3
    assert len(stored(store)) == 6


def test_a_failed_flush_accepts_none_of_the_batch(tmp_path, monkeypatch):
    store = TokenStore(str(tmp_path))
    store.accept(fresh_token("0" * 32))  # the folders exist; now the disk fails

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    failures = store.accept_many([fresh_token(f"{i:032x}") for i in range(1, 4)])
    assert all(isinstance(f, OSError) and f.errno == 5 for f in failures)
    assert len(stored(store)) == 1


def test_group_commit_writes_concurrent_streams_together(tmp_path):
    store = TokenStore(str(tmp_path))
    commit = GroupCommit(store)
    tokens = [fresh_token(f"{i:032x}") for i in range(50)]
    outcomes = {}

    def stream(i, token):
        try:
            commit.accept(token)
            outcomes[i] = "ok"
        except DuplicateSharetoken:
            outcomes[i] = "duplicate"

    jobs = [gevent.spawn(stream, i, t) for i, t in enumerate(tokens + tokens[:1])]
    gevent.joinall(jobs, timeout=60, raise_error=True)
    assert [outcomes[i] for i in range(50)].count("ok") == 50
    assert outcomes[50] == "duplicate"
    assert len(stored(store)) == 50
    assert commit.batches < 10  # grouped, not one write per stream


def test_a_writer_killed_mid_batch_leaves_no_stream_waiting(tmp_path, monkeypatch):
    store = TokenStore(str(tmp_path))
    commit = GroupCommit(store)
    release = threading.Event()
    real = store.accept_many
    monkeypatch.setattr(store, "accept_many", lambda tokens: release.wait(10) and real(tokens))
    outcomes = []

    def stream(token):
        try:
            commit.accept(token)
            outcomes.append("ok")
        except OSError as exc:
            outcomes.append(str(exc))

    first = gevent.spawn(stream, fresh_token("1" * 32))
    gevent.sleep(0.1)  # its batch is being written
    later = gevent.spawn(stream, fresh_token("2" * 32))  # waits for the next batch
    gevent.sleep(0.1)
    commit._writer.kill()
    release.set()
    gevent.joinall([first, later], timeout=20)
    assert sorted(outcomes) == ["ok", "the sharetoken store was interrupted"]
