"""The README's crontab, run as cron runs it: its very lines (read from README.md, so the
document stays true) through /bin/sh, with cron's bare environment (PATH=/usr/bin:/bin and
no HOME), no terminal and a session of their own, on the single file an operator installs."""

import os
import re
import shutil
import signal
import subprocess

import pytest
from conftest import ROOT, wait_for

from wireleap_relay import pidfile
from wireleap_relay.home import Home
from wireleap_relay.testing import circuit
from wireleap_relay.testing.procstat import process_tree
from wireleap_relay.testing.relayproc import RelayHome, make_home

INSTALLED = "/opt/wireleap-relay"  # where the README's lines expect the relay
BUILT = "wireleap-relay_linux-amd64"


def crontab() -> tuple[str, str]:
    """The commands of the README's `@reboot` line and of its periodic line."""
    with open(os.path.join(ROOT, "README.md")) as f:
        block = re.search(r"```crontab\n(.*?)```", f.read(), re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("@reboot "), lines
    assert "%" not in block  # cron would cut the command there
    return lines[0].split(None, 1)[1], lines[1].split(None, 5)[5]


def as_cron(command: str, home: Home) -> subprocess.CompletedProcess:
    """What cron does with a line; the output is what cron would mail."""
    return subprocess.run(["/bin/sh", "-c", command.replace(INSTALLED, home.root)],
                          env={"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}, cwd="/",
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          start_new_session=True, timeout=180)


def pid_of(relay: RelayHome) -> int:
    with open(relay.home.pid_file) as f:
        return int(f.read())


def relay_processes(relay: RelayHome) -> set[int]:
    """Every live process running this home's relay file: masters and workers."""
    found = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            continue
        if relay.home.binary.encode() in argv and pidfile.alive(int(entry)):
            found.add(int(entry))
    return found


def family(pid: int) -> set[int]:
    """A master, its fork server and its workers."""
    return set(process_tree(pid))


@pytest.fixture
def installed(tmp_path, built, contract):
    relay = make_home(str(tmp_path), "relay", contract.url, "backing", workers=2)
    shutil.copy(built / BUILT, relay.home.binary)
    yield relay
    as_cron(f"{INSTALLED}/wireleap-relay stop", relay.home)


def test_the_readme_crontab_keeps_one_relay_up(installed):
    at_boot, watchdog = crontab()
    booted = as_cron(at_boot, installed.home)
    assert booted.returncode == 0, booted.stdout + booted.stderr
    first = pid_of(installed)
    environment = open(f"/proc/{first}/environ", "rb").read().split(b"\0")
    assert b"PATH=/usr/bin:/bin" in environment
    assert not any(item.startswith(b"HOME=") for item in environment)
    assert relay_processes(installed) == family(first) and len(family(first)) == 4

    running = as_cron(watchdog, installed.home)
    assert (running.returncode, running.stdout, running.stderr) == (0, "", "")  # no mail
    assert pid_of(installed) == first and relay_processes(installed) == family(first)

    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: not pidfile.alive(first))
    revived = as_cron(watchdog, installed.home)
    assert revived.returncode == 0, revived.stdout + revived.stderr
    second = pid_of(installed)
    assert second != first
    assert f"successfully spawned wireleap-relay with pid {second}" in revived.stderr
    # The dead master's workers leave once they notice it is gone: one relay remains.
    assert wait_for(lambda: relay_processes(installed) == family(second))
    assert circuit.ping(installed.address, pool=circuit.ConnectionPool()).code == 200

    again = as_cron(watchdog, installed.home)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert pid_of(installed) == second and relay_processes(installed) == family(second)


def test_the_watchdog_leaves_a_relay_it_cannot_tell_about_alone(installed):
    """`status` exit 2 (an unreadable pid file): no start, which might make a second
    relay."""
    _, watchdog = crontab()
    os.mkdir(installed.home.pid_file)
    try:
        result = as_cron(watchdog, installed.home)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert relay_processes(installed) == set()
    finally:
        os.rmdir(installed.home.pid_file)
