"""A stand-in for systemd's end of $NOTIFY_SOCKET, where no systemd can run: a unix datagram
socket that records each message with the pid of the process that sent it, which the
kernel vouches for (SO_PASSCRED), as systemd itself learns it."""

import os
import socket
import struct
import tempfile
import time
import uuid
from dataclasses import dataclass

_UCRED = struct.Struct("3i")  # pid, uid, gid


@dataclass(frozen=True)
class Message:
    sender: int
    fields: dict[str, str]


class NotifySocket:
    """`abstract=True` binds a name in the abstract namespace (`@...`, as systemd does for
    its own), otherwise a path in a fresh short folder (unix paths are limited to 108
    bytes). `env` is what to add to a relay's environment."""

    def __init__(self, abstract: bool = False) -> None:
        self._folder = None if abstract else tempfile.mkdtemp(prefix="wl-notify-")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            name = f"wireleap-test-notify-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(self._folder, "notify")
            self.sock.bind(self.address)
        self.sock.setblocking(False)
        self.messages: list[Message] = []
        self._next = 0  # where expect() looks from

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address}

    def received(self) -> list[Message]:
        """Every message so far, in order."""
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(_UCRED.size))
            except BlockingIOError:
                return self.messages
            sender = next((_UCRED.unpack(cdata[:_UCRED.size])[0]
                           for level, kind, cdata in ancillary
                           if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)),
                          0)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.messages.append(Message(sender, fields))

    def expect(self, key: str, value: str | None = None, timeout: float = 60.0) -> Message:
        """The next message that sets `key` (to `value`, if given); the messages before it
        are passed over, so expectations in a row check the order."""
        deadline = time.monotonic() + timeout
        while True:
            for index in range(self._next, len(self.received())):
                message = self.messages[index]
                if key in message.fields and value in (None, message.fields[key]):
                    self._next = index + 1
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no {key}={value or '*'} after message {self._next}: "
                                     f"{self.messages}")
            time.sleep(0.05)

    def close(self) -> None:
        self.sock.close()
        if self._folder:
            os.unlink(self.address)
            os.rmdir(self._folder)
