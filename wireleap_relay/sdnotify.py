"""systemd's readiness protocol (sd_notify(3)): newline-separated `KEY=VALUE` fields in one
datagram to the unix socket named by $NOTIFY_SOCKET (a path, or `@name` for the abstract
namespace). With `Type=notify` and `NotifyAccess=all` in the unit, the master says when it
is ready, reloading or stopping, and after a hand-over the new master names itself the
main process, so systemd follows the relay instead of a pid that is gone.

Outside systemd the variable is unset and every call does nothing. Nothing here raises:
a notification that cannot be sent must never stop the relay.
"""

import os
import socket
import time

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"


def notify(*fields: str) -> bool:
    """Send `fields` (e.g. "READY=1") as one message; False when there is no socket to
    send to or the send failed."""
    address = _address(os.environ.get(NOTIFY_SOCKET_ENV, ""))
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.send("\n".join(fields).encode())
    except (OSError, ValueError):
        return False
    return True


def ready(status: str) -> bool:
    """Serving: the main process is this one (also after a hand-over, where systemd still
    tracks the master that started us)."""
    return notify("READY=1", f"MAINPID={os.getpid()}", f"STATUS={status}")


def reloading() -> bool:
    """systemd >= 253 wants the monotonic clock with RELOADING=1, to tell this reload from
    an earlier one; READY=1 ends it."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading config.json")


def stopping() -> bool:
    return notify("STOPPING=1", "STATUS=stopping")


def status(text: str) -> bool:
    return notify(f"STATUS={text}")


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # unset, or a kind we do not speak (vsock: a VM's systemd)
