"""Binding the status API's socket: TCP, or a unix socket file that is replaced when it
exists, gets its configured mode before anyone can connect, and is removed only by the
process that made it."""

import os
import socket
import stat

from wireleap_relay.restapi.endpoint import Endpoint

BACKLOG = 64


class Bound:
    """A listening socket and, for a unix socket, the identity of the file we made."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self._file: tuple[int, int] | None = None
        self.sock = _unix(endpoint) if endpoint.is_unix else _tcp(endpoint)
        if endpoint.is_unix:
            st = os.stat(endpoint.path)
            self._file = (st.st_dev, st.st_ino)

    def remove_file(self) -> None:
        """Delete our socket file, unless another process has put its own in its place
        (a new master, which removes ours before it binds)."""
        if self._file is None:
            return
        try:
            st = os.stat(self.endpoint.path)
            if (st.st_dev, st.st_ino) == self._file:
                os.unlink(self.endpoint.path)
        except OSError:
            pass


def _tcp(endpoint: Endpoint) -> socket.socket:
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((endpoint.host, endpoint.port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _unix(endpoint: Endpoint) -> socket.socket:
    _remove_old_socket(endpoint.path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(endpoint.path)
        os.chmod(endpoint.path, endpoint.mode)  # before listen: nobody connects meanwhile
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _remove_old_socket(path: str) -> None:
    """The Go relay removes whatever is at the path; a socket is all we remove, so a
    mistyped path cannot cost the operator a file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    os.unlink(path)
