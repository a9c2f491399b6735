"""Daemon control from the command line: background `start`, `stop`, `restart`, `status`
(operations.md §3.3–3.7).

Unlike the Go relay, whose background `start` reports success if the child is still alive
after 2 seconds, `start` here returns only once the daemon is really serving (it writes its
pid file after it is listening) or has failed, and then prints why. A stale pid file is
cleared instead of blocking `start` or failing `stop`.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from wireleap_relay import pidfile
from wireleap_relay.bounds import HANDOVER_FAILED, STOP_GRACE
from wireleap_relay.home import BINARY_NAME, Home
from wireleap_relay.selfexec import own_command

START_TIMEOUT = 90.0  # contract lookups may retry for a while before the relay listens
STOP_TIMEOUT = STOP_GRACE + 5.0  # the daemon drains streams for up to STOP_GRACE first
POLL = 0.05

EXIT_RUNNING, EXIT_NOT_RUNNING, EXIT_UNKNOWN = 0, 1, 2


def running_pid(home: Home, say: Callable[[str], None]) -> int | None:
    """The live daemon's pid; a stale or garbled pid file is removed. Raises PidFileError
    when the file cannot be read at all."""
    try:
        pid = pidfile.read(home.pid_file)
    except pidfile.NotAPid as exc:
        say(f"removing unusable pid file: {exc}")
        _remove_quietly(home.pid_file)
        return None
    if pid is not None and not pidfile.alive(pid):
        say(f"removing stale pid file {home.pid_file} (pid {pid} is not running)")
        pidfile.remove(home.pid_file, pid)
        return None
    return pid


def start(home: Home, say: Callable[[str], None]) -> int:
    try:
        if running_pid(home, say) is not None:
            say(f"{BINARY_NAME} daemon is already running!")
            return 1
    except pidfile.PidFileError as exc:
        return _cannot_tell(exc, say)
    with open(home.log_file, "ab") as log:
        offset = log.tell()
        child = subprocess.Popen(own_command() + ["start", "--fg"], stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=log, close_fds=True,
                                 start_new_session=True)
    say(f"starting {BINARY_NAME} with pid {child.pid}, writing to {home.log_file}...")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            say(f"{BINARY_NAME} is not running, {home.log_file} follows:")
            sys.stdout.write(_log_since(home.log_file, offset))
            return 1
        if pidfile.read_quietly(home.pid_file) == child.pid:
            say(f"successfully spawned {BINARY_NAME} with pid {child.pid}, "
                f"writing to {home.log_file}")
            return 0
        time.sleep(POLL)
    child.kill()
    say(f"{BINARY_NAME} did not come up within {START_TIMEOUT:g}s, {home.log_file} "
        "follows:")
    sys.stdout.write(_log_since(home.log_file, offset))
    return 1


def _cannot_tell(exc: pidfile.PidFileError, say: Callable[[str], None]) -> int:
    """Without a readable pid file a second daemon could start beside a running one."""
    say(f"cannot tell whether {BINARY_NAME} is running: {exc}; fix or remove it first")
    return 1


def stop(home: Home, say: Callable[[str], None]) -> int:
    try:
        pid = pidfile.read(home.pid_file)
    except pidfile.NotAPid as exc:
        _remove_quietly(home.pid_file)
        say(f"{BINARY_NAME} is not running (removed its pid file: {exc})")
        return 1
    except pidfile.PidFileError as exc:
        say(f"could not get pid of {BINARY_NAME} from {home.pid_file}: {exc}")
        return 1
    if pid is None:
        say(f"{BINARY_NAME} is not running (there is no {home.pid_file})")
        return 1
    if not pidfile.alive(pid):
        pidfile.remove(home.pid_file, pid)
        say(f"{BINARY_NAME} was not running (removed the stale pid file of pid {pid})")
        return 0
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, STOP_TIMEOUT):
        os.kill(pid, signal.SIGKILL)
        if not _wait_gone(pid, 5.0):
            say(f"timed out waiting for {BINARY_NAME} (pid {pid}) to shut down -- "
                "process still alive!")
            return 1
    pidfile.remove(home.pid_file, pid)
    say(f"stopped {BINARY_NAME} daemon (was pid {pid})")
    return 0


def restart(home: Home, say: Callable[[str], None]) -> int:
    """A running relay hands over to a new one on the same socket (no refused connection,
    running streams finish); a stopped one is simply started."""
    try:
        pid = running_pid(home, say)
    except pidfile.PidFileError as exc:
        return _cannot_tell(exc, say)
    if pid is None:
        return start(home, say)
    return handover(home, pid, say)


def handover(home: Home, pid: int, say: Callable[[str], None]) -> int:
    """Ask the master `pid` to start its successor; wait until the successor owns the pid
    file (it is then listening and enrolled)."""
    offset = os.path.getsize(home.log_file) if os.path.exists(home.log_file) else 0
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        new = pidfile.read_quietly(home.pid_file)
        if new not in (None, pid) and pidfile.alive(new):
            say(f"restarted {BINARY_NAME} daemon (pid {pid} -> {new})")
            return 0
        if not pidfile.alive(pid) or HANDOVER_FAILED in _log_since(home.log_file, offset):
            break
        time.sleep(POLL)
    say(f"{BINARY_NAME} did not restart, the running one keeps serving; "
        f"{home.log_file} follows:")
    sys.stdout.write(_log_since(home.log_file, offset))
    return 1


def reload(home: Home, say: Callable[[str], None]) -> int:
    try:
        pid = running_pid(home, say)
    except pidfile.PidFileError as exc:
        pid, reason = None, str(exc)
    else:
        reason = "no running daemon"
    if pid is None:
        say(f"could not get pid of {BINARY_NAME} from {home.pid_file}: {reason}")
        return 1
    before = _reload_answer(home)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + START_TIMEOUT  # new workers must come up first
    while time.monotonic() < deadline and pidfile.alive(pid):
        answer = _reload_answer(home)
        if answer != before and answer.get("pid") == pid:
            if answer.get("done"):
                say(f"reloaded {BINARY_NAME} daemon (pid {pid})")
                return 0
            say(f"{BINARY_NAME} daemon (pid {pid}) did not reload: {answer.get('message')}")
            return 1
        time.sleep(POLL)
    say(f"{BINARY_NAME} daemon (pid {pid}) gave no answer to the reload; see "
        f"{home.log_file}")
    return 1


def _reload_answer(home: Home) -> dict:
    try:
        with open(home.reload_answer, "rb") as f:
            answer = json.loads(f.read())
        return answer if isinstance(answer, dict) else {}
    except (OSError, ValueError):
        return {}


def status(home: Home) -> tuple[int, str]:
    try:
        pid = pidfile.read(home.pid_file)
    except pidfile.NotAPid as exc:
        return EXIT_NOT_RUNNING, f"{BINARY_NAME} is not running ({exc})"
    except pidfile.PidFileError:
        return EXIT_UNKNOWN, f"could not read {BINARY_NAME} status"
    if pid is None:
        return EXIT_NOT_RUNNING, f"{BINARY_NAME} is not running"
    if not pidfile.alive(pid):
        return EXIT_NOT_RUNNING, (f"{BINARY_NAME} is not running (might have crashed, "
                                  f"see {BINARY_NAME}.log)")
    return EXIT_RUNNING, f"{BINARY_NAME} is running, pid {pid}"


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pidfile.alive(pid):
            return True
        time.sleep(POLL)
    return False


def _log_since(path: str, offset: int) -> str:
    if not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")
