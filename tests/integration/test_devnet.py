"""`make run`: the local network comes up, a SOCKS5 client downloads through its 3-hop
circuit, and Ctrl-C stops everything it started."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, socks_get


class MakeRun:
    """`make run` in `folder`, up to its "Ctrl-C stops everything" line."""

    def __init__(self, folder) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "wireleap_relay.testing"],
                                     cwd=folder, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, PYTHONPATH=ROOT))

    def wait_up(self) -> None:
        lines = []
        deadline = time.monotonic() + 60
        while not any("Ctrl-C" in line for line in lines):
            line = self.proc.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(lines)
            lines.append(line)
        self.text = "".join(lines)
        target = re.search(r"HTTP target\s+http://127\.0\.0\.1:(\d+)/", self.text)
        socks = re.search(r"SOCKS5 entry\s+127\.0\.0\.1:(\d+)", self.text)
        assert target and socks, self.text
        self.target, self.socks = int(target.group(1)), ("127.0.0.1", int(socks.group(1)))
        self.relay_homes = re.findall(r"\(home (\S+)\)", self.text)

    def relay_pids(self) -> list[int]:
        return [int(open(os.path.join(h, "wireleap-relay.pid")).read())
                for h in self.relay_homes]

    def download(self, size: int) -> int:
        response = socks_get(self.socks, "127.0.0.1", self.target, f"/{size}")
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        return len(body)

    def stop(self) -> int:
        """Ctrl-C, as the operator would; killed if it does not end."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}") or \
        open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_make_run_network(tmp_path):
    run = MakeRun(tmp_path)
    try:
        run.wait_up()
        assert [os.path.basename(h) for h in run.relay_homes] == \
            ["fronting", "entropic", "backing"]
        pids = run.relay_pids()
        assert run.download(1_000_000) == 1_000_000
    finally:
        assert run.stop() == 0
    assert all(gone(pid) for pid in pids)


def test_a_second_make_run_leaves_the_first_alone(tmp_path):
    """It used to wipe devnet/ under the running relays of the first one."""
    first = MakeRun(tmp_path)
    second = None
    try:
        first.wait_up()
        pids = first.relay_pids()
        second = MakeRun(tmp_path)
        try:
            said = second.proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            pytest.fail("the second `make run` started a network of its own in devnet/")
        assert second.proc.returncode == 1
        assert said == (f"{tmp_path}/devnet is in use by another `make run` (pid "
                        f"{first.proc.pid}): stop that one first (Ctrl-C in its terminal)\n")
        assert first.relay_pids() == pids and not any(gone(pid) for pid in pids)
        assert first.download(100_000) == 100_000
    finally:
        if second is not None:
            second.stop()
        assert first.stop() == 0
    third = MakeRun(tmp_path)  # the first one's lock went with it
    try:
        third.wait_up()
        assert third.download(1000) == 1000
    finally:
        assert third.stop() == 0
