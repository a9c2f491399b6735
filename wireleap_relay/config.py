"""config.json: every key declared once (type, default, rule, doc), loading onto the
defaults, and validation that names the key and the rule.

Covers the keys of the 2021 relay and of relay 0.6.1 (operations.md §5). Unknown keys are
warnings, not errors, so a config written for a newer relay still loads.
"""

import difflib
import ipaddress
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from wireleap_relay import datasize, duration
from wireleap_relay.restapi import endpoint

ROLES = ("fronting", "entropic", "backing")
RELAY_SCHEMES = ("wireleap", "https")
DEFAULT_CHANNEL = "default"


class ConfigError(Exception):
    """The config cannot be used; `problems` lists every broken rule, one line each, and
    `warnings` the unknown keys, which often explain them (`adress` -> address missing)."""

    def __init__(self, problems: list[str], warnings: list[str] | None = None):
        super().__init__("\n".join(problems))
        self.problems = problems
        self.warnings = warnings or []


@dataclass(frozen=True)
class ContractEntry:
    url: str
    role: str
    address: str
    key: str | None = None
    upgrade_channel: str | None = None
    network_usage_limit: int | None = None  # bytes


@dataclass(frozen=True)
class Config:
    address: str
    contracts: dict[str, ContractEntry]
    archive_dir: str | None = None
    auto_submit_interval: int = 5 * duration.MINUTE
    maxtime: int = 0
    timeout: int = 5 * duration.SECOND
    bufsize: int = 4096
    auto_upgrade: bool = True
    workers: int | None = None
    max_connections: int = 4096
    refuse_private_addresses: bool = False
    allow_loopback: bool = False
    network_usage: dict = field(default_factory=dict)
    rest_api: dict = field(default_factory=dict)

    @property
    def upgrade_channel(self) -> str:
        """The channel whose version is tracked for upgrades (relay 0.5.1+ rule)."""
        for entry in self.contracts.values():
            if entry.upgrade_channel:
                return entry.upgrade_channel
        return DEFAULT_CHANNEL

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def listen_host_port(self) -> tuple[str, int]:
        return split_host_port(self.address)

    @property
    def rest_api_endpoint(self) -> endpoint.Endpoint | None:
        """Where the status API listens; None when it is off."""
        address = self.rest_api.get("address")
        if address is None:
            return None
        return endpoint.parse(address, endpoint.parse_mode(self.rest_api.get("socket_umask")))


# --- the key registry -------------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    name: str
    doc: str
    parse: Callable[[Any, str], Any]
    default: Any = None
    required: bool = False


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be a string")
    return value


def _duration(value: Any, where: str) -> int:
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be a duration string like \"5m0s\"")
    try:
        return duration.parse(value)
    except duration.DurationError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _positive_duration(value: Any, where: str) -> int:
    ns = _duration(value, where)
    if ns <= 0:
        raise ValueError(f"{where}: must be longer than 0s")
    return ns


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: must be true or false")
    return value


def _bufsize(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: must be a whole number of bytes")
    if not 1 <= value <= 16 * 1024 * 1024:
        raise ValueError(f"{where}: must be between 1 and 16777216 bytes, got {value}")
    return value


def _workers(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
        raise ValueError(f"{where}: must be a whole number from 1 to 256")
    return value


def _max_connections(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise ValueError(f"{where}: must be a whole number from 1 to 1000000")
    return value


def _listen_address(value: Any, where: str) -> str:
    text = _string(value, where)
    try:
        split_host_port(text)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return text


def _bytesize(value: Any, where: str) -> int:
    try:
        return datasize.parse(_string(value, where))
    except datasize.SizeError as exc:
        raise ValueError(f"{where}: {exc}") from exc


TOP_KEYS = (
    Key("address", "address to listen on for TLS+HTTP/2 (host:port)", _listen_address,
        required=True),
    Key("archive_dir", "where submitted sharetokens are archived (joined onto the home)",
        _string),
    Key("auto_submit_interval", "interval between sharetoken submission runs; 0s disables",
        _duration, default=5 * duration.MINUTE),
    Key("maxtime", "maximum lifetime of one relayed connection; 0s means no limit",
        _duration, default=0),
    Key("timeout", "dial timeout for outgoing connections", _positive_duration,
        default=5 * duration.SECOND),
    Key("bufsize", "bytes per read from a remote: a UDP datagram; TCP reads take up to "
        "64 KiB when waiting", _bufsize, default=4096),
    Key("auto_upgrade", "upgrade automatically when the directory announces a version",
        _bool, default=True),
    Key("workers", "processes serving streams; default: one per CPU", _workers),
    Key("max_connections", "client connections one worker serves at once; more wait to "
        "be accepted", _max_connections, default=4096),
    Key("refuse_private_addresses", "refuse to dial private ranges (10/8, 172.16/12, "
        "192.168/16, 100.64/10, fc00::/7)", _bool, default=False),
)

CONTRACT_KEYS = (
    Key("role", "fronting, entropic or backing", _string, required=True),
    Key("address", "public relay URL, wireleap://host:port[/path]", _string, required=True),
    Key("key", "enrollment key, if the directory requires one", _string),
    Key("upgrade_channel", "upgrade channel to follow (default: \"default\")", _string),
    Key("update_channel", "2021 name of upgrade_channel (deprecated)", _string),
    Key("network_usage_limit", "traffic cap per timeframe, e.g. \"500GB\"", _bytesize),
    # Written by the Go relay into its own entry; accepted and ignored.
    Key("pubkey", "(set at enrollment; ignored)", lambda v, w: v),
    Key("version", "(set at enrollment; ignored)", lambda v, w: v),
    Key("versions", "(set at enrollment; ignored)", lambda v, w: v),
)

DANGER_KEYS = (
    Key("allow_loopback", "allow dialing loopback addresses and this host's own (tests "
        "only)", _bool,
        default=False),
)

NETWORK_USAGE_KEYS = (
    Key("timeframe", "network usage window; 0s disables usage caps", _duration, default=0),
    Key("global_limit", "total traffic cap per timeframe; 0B: none", _bytesize, default=0),
    Key("write_interval", "how often usage is saved to stats.json (default 1m0s); 0s "
        "disables usage tracking", _duration),
    Key("archive_dir", "where closed usage periods are archived", _string),
)

REST_API_KEYS = (
    Key("address", "http://host:port or file:///path.sock of the status API", _string),
    Key("socket_umask", "mode of the API socket file, three octal digits", _string),
)


# --- loading ------------------------------------------------------------------------------

def load(path: str) -> tuple[Config, list[str]]:
    """Read and validate config.json. Returns the config and warnings; raises ConfigError."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: no such file (create it, see the README's "
                           "Configuration section)"]) from exc
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    return parse(raw, path)


def parse(raw: bytes, path: str = "config.json") -> tuple[Config, list[str]]:
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise ConfigError([f"{path}: not valid JSON: {exc}"]) from exc
    if not isinstance(obj, dict):
        raise ConfigError([f"{path}: must hold a JSON object"])
    problems: list[str] = []
    warnings: list[str] = []
    top = _section(obj, "", TOP_KEYS, problems, warnings,
                   extra=("contracts", "danger_zone", "network_usage", "rest_api"))
    danger = _subsection(obj, "danger_zone", DANGER_KEYS, problems, warnings)
    network_usage = _subsection(obj, "network_usage", NETWORK_USAGE_KEYS, problems, warnings)
    rest_api = _subsection(obj, "rest_api", REST_API_KEYS, problems, warnings)
    contracts = _contracts(obj.get("contracts"), problems, warnings)
    _check_rest_api(rest_api, problems)
    _check_network_usage(network_usage, contracts, warnings)
    if problems:
        raise ConfigError(problems, warnings)
    return Config(contracts=contracts, allow_loopback=danger["allow_loopback"],
                  network_usage=network_usage, rest_api=rest_api, **top), warnings


def _section(obj: dict, prefix: str, keys: tuple[Key, ...], problems: list[str],
             warnings: list[str], extra: tuple[str, ...] = ()) -> dict:
    known = {k.name for k in keys} | set(extra)
    for name in obj:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            warnings.append(f"{prefix}{name}: unknown key, ignored{hint}")
    values = {}
    for key in keys:
        where = prefix + key.name
        value = obj.get(key.name)
        if value is None:
            if key.required:
                problems.append(f"{where}: has to be set")
            values[key.name] = key.default
            continue
        try:
            values[key.name] = key.parse(value, where)
        except ValueError as exc:
            problems.append(str(exc))
            values[key.name] = key.default
    return values


def _subsection(obj: dict, name: str, keys: tuple[Key, ...], problems: list[str],
                warnings: list[str]) -> dict:
    sub = obj.get(name)
    if sub is None:
        sub = {}
    if not isinstance(sub, dict):
        problems.append(f"{name}: must be a JSON object")
        sub = {}
    return _section(sub, name + ".", keys, problems, warnings)


def _contracts(obj: Any, problems: list[str], warnings: list[str]) -> dict[str, ContractEntry]:
    if obj is None or obj == {}:
        problems.append("contracts: at least one service contract has to be set")
        return {}
    if not isinstance(obj, dict):
        problems.append("contracts: must be a JSON object of contract URL to relay entry")
        return {}
    entries = {}
    for url, entry in obj.items():
        where = f"contracts[{json.dumps(url)}]"
        before = len(problems)
        _check_contract_url(url, where, problems)
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a JSON object (relay entry), got "
                            f"{'null' if entry is None else type(entry).__name__}")
            continue
        values = _section(entry, where + ".", CONTRACT_KEYS, problems, warnings)
        _check_entry(values, where, problems, warnings)
        if len(problems) == before:
            entries[url] = ContractEntry(
                url=url, role=values["role"], address=values["address"], key=values["key"],
                upgrade_channel=values["upgrade_channel"] or values["update_channel"],
                network_usage_limit=values["network_usage_limit"])
    _check_channels(obj, problems, warnings)
    return entries


def _check_contract_url(url: str, where: str, problems: list[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{where}: the contract URL must be http(s)://host[:port][/path]")


def _check_entry(values: dict, where: str, problems: list[str], warnings: list[str]) -> None:
    role = values["role"]
    if role is not None and role not in ROLES:
        problems.append(f"{where}.role: must be one of {', '.join(ROLES)}, got {role!r}")
    address = values["address"]
    if address is not None:
        parts = urlsplit(address)
        if parts.scheme not in RELAY_SCHEMES:
            problems.append(f"{where}.address: scheme must be wireleap:// (or legacy "
                            f"https://), got {address!r}")
        elif not parts.hostname:
            problems.append(f"{where}.address: has no host: {address!r}")
        elif not _valid_port(parts):
            problems.append(f"{where}.address: invalid port in {address!r}")
        elif role in ("entropic", "backing") and _port(parts) is None:
            # Later hops are dialed by the previous relay with a raw host:port (wire.md §1.5).
            problems.append(f"{where}.address: an {role} relay needs an explicit port, "
                            f"e.g. wireleap://{parts.hostname}:13490")
    if values["update_channel"] is not None:
        warnings.append(f"{where}.update_channel: deprecated, use upgrade_channel")


def _valid_port(parts: Any) -> bool:
    try:
        _ = parts.port
    except ValueError:
        return False
    return True


def _port(parts: Any) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def _check_channels(obj: dict, problems: list[str], warnings: list[str]) -> None:
    named = [url for url, e in obj.items()
             if isinstance(e, dict) and (e.get("upgrade_channel") or e.get("update_channel"))]
    if len(named) > 1:
        problems.append("contracts: only one contract may set upgrade_channel (or the older "
                        f"update_channel), found {len(named)} ({', '.join(named)})")
    elif not named and len(obj) > 1:
        # Relay 0.6.1 refuses this; the 2021 README's own two-contract example relies on it.
        warnings.append("contracts: no contract sets upgrade_channel; upgrades follow the "
                        f"{DEFAULT_CHANNEL!r} channel")


def _check_rest_api(rest_api: dict, problems: list[str]) -> None:
    if rest_api["address"] is not None:
        try:
            endpoint.parse(rest_api["address"])
        except ValueError as exc:
            problems.append(str(exc))
    try:
        endpoint.parse_mode(rest_api["socket_umask"])
    except ValueError as exc:
        problems.append(str(exc))


def _check_network_usage(usage: dict, contracts: dict[str, ContractEntry],
                         warnings: list[str]) -> None:
    """Settings the Go relay takes silently but that leave the limits without effect."""
    limited = usage["global_limit"] or any(e.network_usage_limit for e in contracts.values())
    if not usage["timeframe"]:
        if limited:
            warnings.append("network_usage.timeframe: not set, so usage is not tracked and "
                            "the usage limits are ignored")
    elif usage["write_interval"] == 0:
        warnings.append("network_usage.write_interval: 0s turns usage tracking off, and "
                        "with it the limits (the default is 1m0s)")


def split_host_port(text: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port" like Go's net.SplitHostPort (port required)."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]*):(\d+)", text)
    if not m:
        raise ValueError(f"must be host:port (e.g. 0.0.0.0:13490), got {text!r}")
    host = m.group(1) if m.group(1) is not None else m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    if m.group(1) is not None:
        ipaddress.IPv6Address(host.split("%")[0])
    return host, port
