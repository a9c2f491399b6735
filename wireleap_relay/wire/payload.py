"""The init payload carried in the `wl-payload` header (wire.md §2.2, §3)."""

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from wireleap_relay.semver import is_semver
from wireleap_relay.wire.gojson import FieldError, as_str, fields
from wireleap_relay.wire.jsonenc import compact
from wireleap_relay.wire.sharetoken import Sharetoken

CLIENT_RELAY_VERSION = "0.2.0"
ALLOWED_PROTOCOLS = ("tcp", "tcp4", "tcp6", "udp", "udp4", "udp6")
ALLOWED_SCHEMES = ("wireleap", "https", "target")
CONNECT = "CONNECT"
PING = "PING"
# Deeper payloads are refused before json.loads, whose own limit depends on the interpreter
# (near 1000 levels up to 3.12, near 10000 from 3.13; Go's is 10000). A valid one is 1 deep.
MAX_DEPTH = 500
_JSON_STRING = re.compile(r'"(?:[^"\\]+|\\.)*"?', re.DOTALL)  # never fails, so linear
_BRACKET = re.compile(r"[][{}]")


class PayloadError(ValueError):
    """An init payload the relay refuses with 400; the message is the wire description.
    `mentions_remote` marks messages that quote the remote, which must not be logged."""

    def __init__(self, message: str, mentions_remote: bool = False):
        super().__init__(message)
        self.mentions_remote = mentions_remote


@dataclass(frozen=True)
class Remote:
    """Where a stream goes: the next relay (`wireleap://`) or the final target."""

    scheme: str
    hostname: str  # without brackets
    port: int | None
    text: str

    @property
    def is_target(self) -> bool:
        return self.scheme == "target"

    @property
    def hostport(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return host if self.port is None else f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> "Remote":
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise PayloadError(f"could not parse payload header: remote {text!r}: {exc}",
                               mentions_remote=True) from exc
        return cls(parts.scheme, _hostname(parts.netloc), port, text)


def _hostname(netloc: str) -> str:
    """The host without port and brackets, case kept as sent (Go's URL.Hostname());
    urlsplit's .hostname would lower-case it and misquote it in messages."""
    hostinfo = netloc.rpartition("@")[2]
    if hostinfo.startswith("["):
        return hostinfo[1:].partition("]")[0]
    return hostinfo.partition(":")[0]


@dataclass(frozen=True)
class InitPayload:
    command: str
    protocol: str = ""
    remote: Remote | None = None
    token: Sharetoken | None = None
    version: str | None = None

    def to_json(self) -> str:
        """Compact JSON in Go struct order (what the Go client sends)."""
        obj: dict = {"command": self.command}
        if self.protocol:
            obj["protocol"] = self.protocol
        if self.remote is not None:
            obj["remote"] = self.remote.text
        if self.token is not None:
            obj["token"] = self.token.to_dict()
        if self.version is not None:
            obj["version"] = self.version
        return compact(obj)


def parse(header: str | None) -> InitPayload:
    """Parse leniently like Go (unknown keys ignored, keys case-insensitive, null = absent)
    but with every value type-checked; raise PayloadError with Go's message prefix."""
    if _too_deep(header or ""):
        # '[' * 5000 would otherwise escape as an internal error (a RecursionError up to 3.12);
        # Go's decoder words it so.
        raise PayloadError("could not parse payload header: exceeded max depth")
    try:
        obj = json.loads(header or "")
    except ValueError as exc:
        raise PayloadError(f"could not parse payload header: {_json_error(header, exc)}") from exc
    try:
        f = fields(obj, "", ("command", "protocol", "remote", "token", "version"))
        command = as_str(f.get("command", ""), "command")
        protocol = as_str(f.get("protocol", ""), "protocol")
        remote = Remote.parse(as_str(f["remote"], "remote")) if "remote" in f else None
        version = as_str(f["version"], "version") if "version" in f else None
        if version is not None and not is_semver(version):
            raise FieldError(f"version: {version!r} is not a semantic version")
        token = Sharetoken.from_dict(f["token"]) if "token" in f and command != PING else None
    except FieldError as exc:
        raise PayloadError(f"could not parse payload header: {exc}") from exc
    return InitPayload(command, protocol, remote, token, version)


def _too_deep(text: str) -> bool:
    """Whether JSON text nests arrays and objects more than MAX_DEPTH deep (strings skipped)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for bracket in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > MAX_DEPTH:
            return True
    return False


def check_connect(payload: InitPayload) -> None:
    """The sanity checks Go defines but never calls (wire.md §3), plus the fields a CONNECT
    cannot do without (Go panics on them, §7.6). Raises PayloadError."""
    if payload.protocol not in ALLOWED_PROTOCOLS:
        raise PayloadError(f"unknown protocol in payload: {payload.protocol}")
    if payload.remote is None:
        raise PayloadError("remote is missing in payload")
    if payload.remote.scheme not in ALLOWED_SCHEMES:
        raise PayloadError(f"unknown URL scheme in payload: {payload.remote.scheme}")
    if payload.command != CONNECT:
        raise PayloadError(f"unknown command in payload: {payload.command}")
    if payload.version is not None and _minor(payload.version) != _minor(CLIENT_RELAY_VERSION):
        raise PayloadError(f"expecting version 0.{_minor(CLIENT_RELAY_VERSION)}.x, "
                           f"got {payload.version}")
    if payload.token is None:
        raise PayloadError("sharetoken is missing in payload")
    if not payload.remote.hostname:
        raise PayloadError(f"remote has no host: {payload.remote.text}", mentions_remote=True)


def _minor(version: str) -> int:
    return int(version.split(".")[1])


def _json_error(text: str | None, exc: ValueError) -> str:
    if not text:
        return "unexpected end of JSON input"
    return str(exc)
