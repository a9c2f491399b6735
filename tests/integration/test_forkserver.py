"""The fork server (forkserver.py): the master forks it before anything runs, it forks the
workers, and they share what it imported; it holds nothing of the master's, leaves with
it, and losing it costs the relay nothing but that sharing."""

import os
import signal
import sys

import pytest
from conftest import FAST, echo_once, run_cli, two_worker_relay, wait_for

from wireleap_relay.forkserver import PROCESS_NAME
from wireleap_relay.testing import procstat
from wireleap_relay.testing.relayproc import RelayProcess, make_home


@pytest.fixture
def relay(tmp_path, contract):
    yield from two_worker_relay(tmp_path, contract)


def command_of(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")[:-1]


def memory(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return {line.split(":")[0]: int(line.split()[1]) for line in f if "kB" in line}


def fork_server_of(master: int) -> int:
    servers = [pid for pid in procstat.children(master)
               if procstat.process_name(pid) == PROCESS_NAME]
    assert len(servers) == 1
    return servers[0]


def test_the_workers_are_forked_by_the_fork_server_and_share_its_memory(relay, wallet,
                                                                         echo_server):
    master = relay.proc.pid
    server = fork_server_of(master)
    workers = procstat.workers(master)
    assert len(workers) == 2 and sorted(procstat.children(server)) == sorted(workers)
    assert echo_once(relay, wallet, echo_server)
    for worker in workers:
        # Copy-on-write: most of what a worker has written to is still the fork server's.
        # An exec'd worker shares no written page at all.
        used = memory(worker)
        assert used["Shared_Dirty"] > used["Private_Dirty"], used
    relay.stop()
    assert not os.path.exists(f"/proc/{server}")


def test_the_fork_server_holds_nothing_of_the_master(tmp_path, contract):
    """Only its socket to the master and its wake-up pipe: not even the listening socket
    a master handed over to its successor passes on at start (after `restart`), nor
    anything else a client could reach or an operator would find held open."""
    proc = RelayProcess(make_home(str(tmp_path), "relay", contract.url, "backing"),
                        env=FAST).start()
    home = proc.relay.home
    try:
        assert run_cli(home, "restart", env=FAST).returncode == 0
        assert proc.proc.wait(30) == 0
        with open(home.pid_file) as f:
            server = fork_server_of(int(f.read()))
        held = sorted(os.readlink(f"/proc/{server}/fd/{fd}")
                      for fd in os.listdir(f"/proc/{server}/fd") if int(fd) > 2)
        assert len(held) == 3, held
        assert sum(link.startswith("socket:") for link in held) == 1, held
        assert sum(link.startswith("pipe:") for link in held) == 2, held
    finally:
        run_cli(home, "stop")


def test_a_lost_fork_server_costs_only_the_sharing(relay, wallet, echo_server):
    """kill -9 the fork server: the relay goes on serving; a worker it forked that dies
    afterwards is still seen leaving (its status is lost with its parent) and is replaced
    by one started as a process of its own."""
    master = relay.proc.pid
    server = fork_server_of(master)
    orphan, other = procstat.workers(master)
    os.kill(server, signal.SIGKILL)
    assert wait_for(lambda: f"the fork server {server} has exited" in relay.log_text())
    assert echo_once(relay, wallet, echo_server)

    os.kill(orphan, signal.SIGKILL)
    assert wait_for(lambda: f"worker {orphan} exited with an unknown status, "
                            f"starting another" in relay.log_text())
    # The orphans left the master's tree with their parent; the new worker is its child.
    assert wait_for(lambda: len(procstat.workers(master)) == 1)
    execd = procstat.workers(master)[0]
    assert execd in procstat.children(master) and command_of(execd)[-1] == b"worker"
    assert os.path.exists(f"/proc/{other}")
    for _ in range(4):
        assert echo_once(relay, wallet, echo_server)


def open_files_limit(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as f:
        soft, hard = next(line for line in f if line.startswith("Max open files")).split()[3:5]
    return int(soft), int(hard)


def test_workers_get_the_raised_open_files_limit(tmp_path, contract):
    """The master lifts the soft limit to the hard one (the README's ulimit advice); the
    workers, forked from a fork server that started before that, need it most."""
    home = make_home(str(tmp_path), "relay", contract.url, "backing", workers=2)
    lowered = ["bash", "-c", 'ulimit -Sn 256 && exec "$@"', "bash", sys.executable, "-m",
               "wireleap_relay"]
    proc = RelayProcess(home, command=lowered, env=FAST).start()
    try:
        soft, hard = open_files_limit(proc.proc.pid)
        assert soft == hard and f"soft {hard} (was 256)" in proc.log_text()
        for worker in procstat.workers(proc.proc.pid):
            assert open_files_limit(worker) == (hard, hard)
    finally:
        proc.stop()
