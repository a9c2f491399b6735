"""`rest_api.address` and `rest_api.socket_umask` as a place to listen (operations.md §5.4):
`http://HOST:PORT` or `file:///abs/path`; pure, so config validation shares it."""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_MODE = "600"
# sun_path holds 108 bytes on Linux, the terminating NUL included.
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class Endpoint:
    """A TCP host and port, or a unix socket path and the mode its file gets."""

    host: str = ""
    port: int = 0
    path: str = ""
    mode: int = 0o600

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    def __str__(self) -> str:
        if self.is_unix:
            return f"file://{self.path}"
        return f"http://[{self.host}]:{self.port}" if ":" in self.host \
            else f"http://{self.host}:{self.port}"


def parse_mode(umask: str | None) -> int:
    """The socket file's mode (despite the key's name, not a umask); ValueError if it is
    not three octal digits."""
    text = DEFAULT_MODE if umask is None else umask
    if not re.fullmatch(r"[0-7]{3}", text):
        raise ValueError(f"rest_api.socket_umask: must be three octal digits like "
                         f"\"600\", got {umask!r}")
    return int(text, 8)


def parse(address: str, mode: int = 0o600) -> Endpoint:
    """The endpoint; ValueError naming the key and the rule otherwise."""
    parts = urlsplit(address)
    if parts.scheme == "file":
        return _unix(parts, mode)
    if parts.scheme == "http":
        return _tcp(parts, address)
    raise ValueError(f"rest_api.address: must be http://host:port or file:///path, got "
                     f"{address!r}")


def _unix(parts, mode: int) -> Endpoint:
    if parts.netloc:
        raise ValueError("rest_api.address: file path must start with \"file:///\"")
    path = parts.path
    if path in ("", "/") or path.endswith("/"):
        raise ValueError(f"rest_api.address: file:// needs the socket file's path, got "
                         f"{path!r}")
    if len(path.encode()) > MAX_SOCKET_PATH:
        raise ValueError(f"rest_api.address: a unix socket path can be at most "
                         f"{MAX_SOCKET_PATH} bytes long, got {len(path.encode())}")
    return Endpoint(path=path, mode=mode)


def _tcp(parts, address: str) -> Endpoint:
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"rest_api.address: must be http://host:port with a port from 0 "
                         f"to 65535 and no path, got {address!r}")
    return Endpoint(host=parts.hostname or "", port=port)
