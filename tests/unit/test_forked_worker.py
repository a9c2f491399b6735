"""The fork server on its own, in a fresh interpreter (it must start before a gevent hub,
which this test process has): what a forked worker gets and how its exit is reported."""

import errno
import json
import subprocess
import sys

SCRIPT = r"""
from gevent import monkey; monkey.patch_all()
import json, os, signal, sys, time
from wireleap_relay import forkserver
from wireleap_relay.forkserver import ForkServer

os.environ["CHANGED"] = "at fork"
os.environ["DROPPED"] = "at fork"

def target():
    message = sys.stdin.readline().strip()
    if message == "hang":
        signal.pause()
    with os.fdopen(int(os.environ["REPLY_FD"]), "w") as reply:
        json.dump({"stdin": message, "env": dict(os.environ)}, reply)
    return 3

forks = ForkServer.start(target)
env = {name: value for name, value in os.environ.items() if name != "DROPPED"}
env.update(CHANGED="for the worker", ADDED="for the worker")
results = {}
for message in ("hello", "hang"):
    stdin_read, stdin_write = os.pipe()
    reply_read, reply_write = os.pipe()
    worker = forks.spawn(stdin_read, {"REPLY_FD": reply_write}, env)
    os.close(stdin_read)
    os.close(reply_write)
    os.write(stdin_write, message.encode() + b"\n")
    if message == "hang":
        worker.kill()
    results[message] = {"status": worker.wait(10),
                        "reply": json.loads(os.read(reply_read, 1 << 20) or b"null")}

# A request too large for one packet: refused, and the server goes on.
stdin_read, stdin_write = os.pipe()
try:
    forks.spawn(stdin_read, {}, dict(env, BIG="x" * 70000))
except OSError as exc:
    results["too large"] = exc.errno
# A fork server that stops answering is killed, with the request it never read: no
# half-started worker may hold the descriptors of one the master starts over with.
forkserver.SPAWN_TIMEOUT = 1
os.kill(forks.pid, signal.SIGSTOP)
stdin_read, stdin_write = os.pipe()
try:
    forks.spawn(stdin_read, {}, env)
except forkserver.ForkServerLost:
    os.close(stdin_read)
    results["stuck"] = "someone still holds the worker's stdin"
    for _ in range(50):  # the kernel drops the dead server's queued descriptors soon after
        try:
            os.write(stdin_write, b"anyone?")
        except BrokenPipeError:
            results["stuck"] = {"alive": forks.alive,
                                "exists": os.path.exists(f"/proc/{forks.pid}")}
            break
        time.sleep(0.1)
forks.close()
print(json.dumps(results))
"""


def test_a_forked_worker_gets_its_stdin_fds_and_environment_and_its_status_comes_back():
    """Also: a request too large is refused without harm, and a fork server that stops
    answering is killed and reaped with the request it never read."""
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    hello = results["hello"]
    assert hello["status"] == 3
    assert hello["reply"]["stdin"] == "hello"
    env = hello["reply"]["env"]
    assert (env["CHANGED"], env["ADDED"]) == ("for the worker", "for the worker")
    assert "DROPPED" not in env and env["REPLY_FD"].isdigit()
    assert results["hang"] == {"status": -9, "reply": None}
    assert results["too large"] == errno.EMSGSIZE
    assert results["stuck"] == {"alive": False, "exists": False}
