"""Network usage caps through real circuits (control.md §6.1, §6.3; wire.md §7.3): small
limits, short timeframes, and the caps checked every 0.2 s instead of 10 s. Bytes count
both ways: what the client sends (here the source's size line) and what the remote sends."""

import glob
import json
import os

import gevent
import pytest
import requests
from conftest import FAST, pattern_block, recv_exactly, run_cli, wait_for
from test_status_api import metrics, request, tcp_api

from wireleap_relay.testing import circuit
from wireleap_relay.testing.relayproc import RelayProcess, make_home
from wireleap_relay.testing.servicekey import Wallet
from wireleap_relay.usage.tracker import CHECK_ENV
from wireleap_relay.wire import b64

KiB, MiB = 1 << 10, 1 << 20
LIMIT = MiB  # "1MB": soft above 943718 bytes, hard above 975175
ENV = {**FAST, CHECK_ENV: "0.2"}


class Net:
    """A fake contract+directory of this test's own and a relay enrolled in it."""

    def __init__(self, tmp_path, make_fake, limit: str | None = "1MB", **usage):
        self.fake = make_fake()
        self.wallet = Wallet(self.fake.url)
        self.contract_pk = b64.encode(self.fake.contract_pubkey)
        self.home = make_home(str(tmp_path), "relay", self.fake.url, "backing", workers=2,
                              network_usage={"timeframe": "1h", **usage})
        if limit:
            with open(self.home.home.config) as f:
                cfg = json.load(f)
            cfg["contracts"][self.fake.url]["network_usage_limit"] = limit
            with open(self.home.home.config, "w") as f:
                json.dump(cfg, f)
        self.proc: RelayProcess | None = None

    def start(self) -> "Net":
        self.proc = RelayProcess(self.home, env=ENV).start()
        return self

    def listed(self) -> bool:
        return self.home.address in requests.get(self.fake.url + "/dir/relays",
                                                 timeout=10).json()

    def dial(self, target: str) -> circuit.Circuit:
        pipe = circuit.dial([(self.home.address, self.home.pubkey)], target, "tcp",
                            *self.wallet.current(), pool=circuit.ConnectionPool())
        pipe.settimeout(20)
        return pipe

    def download(self, source: str, size: int) -> int:
        """Fetch `size` bytes from the source in full; the bytes the relay counts."""
        pipe = self.dial(source)
        line = b"%d\n" % size
        pipe.sendall(line)
        assert len(recv_exactly(pipe, size)) == size
        pipe.close()
        return len(line) + size

    def stats(self) -> dict:
        with open(self.home.home.stats) as f:
            return json.load(f)

    def saved_usage(self) -> int:
        return self.stats()["contract_stats"].get(self.contract_pk, {}).get("network_bytes", 0)

    def log(self) -> str:
        return self.proc.log_text()


@pytest.fixture
def net(tmp_path, make_fake):
    nets: list[Net] = []

    def make(**kwargs) -> Net:
        nets.append(Net(tmp_path, make_fake, **kwargs))
        return nets[-1]

    yield make
    for n in nets:
        if n.proc is not None:
            n.proc.stop()
        if os.path.exists(n.home.home.pid_file):
            run_cli(n.home.home, "stop")


def read_slowly(pipe: circuit.Circuit, size: int) -> gevent.Greenlet:
    """Read up to `size` bytes at a few MB/s; the value is how many arrived, checked
    against the source's pattern."""
    block = pattern_block()

    def run() -> int:
        got = 0
        while got < size:
            data = pipe.recv(64 * KiB)
            if not data:
                break
            start = got % len(block)
            assert data == (block * 2)[start:start + len(data)], f"corrupt at byte {got}"
            got += len(data)
            gevent.sleep(0.01)
        return got
    return gevent.spawn(run)


def assert_refused(n: Net, target: str) -> None:
    pipe = n.dial(target)
    assert pipe.recv(1) == b""
    assert (pipe.status.code, pipe.status.description) == \
        (400, f"relay contract not available: {n.contract_pk}")


def test_soft_cap_leaves_the_directory_and_hard_cap_ends_running_streams(
        net, source_server, echo_server):
    n = net(write_interval="1s").start()
    assert n.listed()
    waiting = n.dial(source_server)  # dialed now, asks for its bytes later
    echo = n.dial(echo_server)
    echo.sendall(b"a")
    assert echo.recv(1) == b"a"
    # Past 90 % of the limit but under 93 %: the relay leaves the directory, new streams
    # are refused, running ones go on.
    line = len(b"%d\n" % LIMIT)
    used = 2 + n.download(source_server, int(LIMIT * 0.915) - 2 - line)
    assert wait_for(lambda: not n.listed())
    assert "Network Cap: disenrolling from contract " + n.contract_pk in n.log()
    assert_refused(n, echo_server)
    echo.sendall(b"b")
    assert echo.recv(1) == b"b"
    # Past 93 %: the running streams of the contract end, cleanly (END_STREAM, no status).
    size = 64 * MiB
    waiting.sendall(b"%d\n" % size)
    got = read_slowly(waiting, size).get(timeout=60)
    assert got < size
    assert waiting.status is None
    assert echo.recv(1) == b""
    assert "Network Cap: disabling contract " + n.contract_pk in n.log()
    assert_refused(n, echo_server)
    # Every byte the client got was counted: the worker's next report (2 s) and the next
    # save (1 s) bring in the last chunk, which a TCP read makes up to 64 KiB.
    assert wait_for(lambda: n.saved_usage() >= used + got)


def test_a_new_period_is_archived_and_re_enrolls(net, source_server, echo_server):
    n = net(timeframe="12s", write_interval="1s", archive_dir="usage").start()
    first = n.stats()["created_at"]
    used = n.download(source_server, int(LIMIT * 0.95))
    assert wait_for(lambda: not n.listed())
    assert_refused(n, echo_server)
    assert wait_for(lambda: n.stats()["created_at"] != first, timeout=30)
    assert wait_for(n.listed)
    assert "Network Cap: re-enrolled into " + n.fake.url in n.log()
    end = first + 12_000
    archived = glob.glob(os.path.join(n.home.home.root, "usage", "*"))
    relay_pk = b64.encode(n.home.pubkey)
    assert archived == [os.path.join(n.home.home.root, "usage", f"{relay_pk}-{end}.json")]
    with open(archived[0], "rb") as f:
        raw = f.read()
    record = json.loads(raw)
    assert raw == json.dumps(record, separators=(",", ":")).encode()  # compact, as 0.6.1
    assert list(record) == ["relay_id", "metrics", "start_at", "end_at", "updated_at"]
    assert record["relay_id"] == relay_pk
    assert record["metrics"] == [{"contract": n.contract_pk, "active": False,
                                  "network_usage_bytes": used}]
    assert (record["start_at"], record["end_at"]) == (first, end)
    assert record["updated_at"] >= end
    stats = n.stats()
    assert stats["created_at"] == end
    assert stats["contract_stats"] == {n.contract_pk: {}}
    pipe = n.dial(echo_server)
    pipe.sendall(b"c")
    assert pipe.recv(1) == b"c"
    gevent.sleep(1.5)  # several gate broadcasts and cap checks: the contract stays enabled
    pipe.sendall(b"d")
    assert pipe.recv(1) == b"d"


def test_usage_adds_up_across_stop_start_and_a_restart_hand_over(net, source_server):
    """The write interval is long: only the saves at stop and after a hand-over's drain
    put the bytes in stats.json, and exactly once."""
    n = net(limit=None, write_interval="1h").start()
    created = n.stats()["created_at"]
    used = n.download(source_server, 300 * KiB)
    n.proc.stop()
    assert n.saved_usage() == used
    n.start()
    assert n.stats()["created_at"] == created
    used += n.download(source_server, 200 * KiB)
    size = 12 * MiB
    across = n.dial(source_server)  # runs on the old master's workers through the switch
    across.sendall(b"%d\n" % size)
    transfer = read_slowly(across, size)
    gevent.sleep(0.3)
    result = run_cli(n.home.home, "restart", env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    used += n.download(source_server, 100 * KiB)  # on the new master's workers
    assert transfer.get(timeout=60) == size
    used += len(b"%d\n" % size) + size
    assert n.proc.proc.wait(70) == 0  # the old master drained, saved and left
    assert run_cli(n.home.home, "stop").returncode == 0
    assert n.saved_usage() == used
    assert n.stats()["created_at"] == created


def test_a_deleted_stats_file_starts_a_new_period(net, source_server):
    n = net(limit=None, write_interval="1h").start()
    created = n.stats()["created_at"]
    n.download(source_server, 100 * KiB)
    n.proc.stop()
    os.unlink(n.home.home.stats)
    n.start()
    assert n.stats()["created_at"] > created
    assert n.stats()["contract_stats"] == {n.contract_pk: {}}


def test_a_corrupt_stats_file_is_set_aside_and_counting_starts_again(net, source_server):
    n = net(limit=None, write_interval="1s")
    with open(n.home.home.stats, "w") as f:
        f.write('{"contract_stats": {"x": {"network_bytes": "lots"}}, "created_at": 1}')
    n.start()
    aside = glob.glob(n.home.home.stats + ".corrupt-*")
    assert len(aside) == 1
    with open(aside[0]) as f:
        assert "lots" in f.read()
    assert f"is not a network usage file (x: 'lots' is not a whole number): moved it to " \
           f"{aside[0]}" in n.log()
    assert n.stats()["contract_stats"] == {n.contract_pk: {}}  # a new period, from zero
    used = n.download(source_server, 100 * KiB)
    assert wait_for(lambda: n.saved_usage() == used)
    saved_at = n.stats()["updated_at"]
    assert wait_for(lambda: n.stats()["updated_at"] > saved_at + 1000)  # two saves later
    assert n.saved_usage() == used  # each save added only what was new


@pytest.mark.parametrize("limits", [{"limit": "1MB"},
                                    {"limit": None, "global_limit": "1MB"}])
def test_a_contract_over_its_cap_at_start_is_not_enrolled(net, echo_server, limits):
    n = net(**limits)
    with open(n.home.home.stats, "w") as f:
        json.dump({"contract_stats": {n.contract_pk: {"network_bytes": LIMIT}},
                   "created_at": int(os.path.getmtime(n.home.home.config) * 1000)}, f)
    n.start()
    assert not n.listed()
    assert_refused(n, echo_server)
    assert f"not enrolling into {n.fake.url}: its network usage is over the cap" in n.log()


def test_the_status_api_and_metrics_show_the_usage(net, source_server):
    """With tracking on, /api/status and /metrics report the period, the cap and the bytes
    counted for the contract (control.md §6.2), once a worker's report has come in."""
    n = net()
    api = tcp_api()
    with open(n.home.home.config) as f:
        cfg = json.load(f)
    cfg["rest_api"] = api
    with open(n.home.home.config, "w") as f:
        json.dump(cfg, f)
    n.start()
    used = n.download(source_server, 100 * KiB)

    def status() -> dict:
        return json.loads(request(api, "GET", "/api/status")[2])

    assert wait_for(lambda: status()["network_usage"]["usage"] == used)
    document = status()
    period = document["network_usage"]
    assert period["timeframe_until"] - period["timeframe_since"] == 3600 * 1000
    assert period["cap"] == 0  # only a per-contract limit is set
    assert document["relay_status"][0]["network_cap"] == LIMIT
    assert document["relay_status"][0]["network_usage"] == used
    assert document["relay_status"][0]["status"] == {"enrolled": True,
                                                     "network_cap_reached": False}
    samples = metrics(api)
    labels = (("contract", n.contract_pk),)
    assert samples[("wireleap_relay_contract_network_usage_bytes", labels)] == used
    assert samples[("wireleap_relay_contract_network_cap_bytes", labels)] == LIMIT
    assert samples[("wireleap_relay_network_usage_bytes", ())] == used
