"""Shared pieces of the fake contract + directory (control.md §7): settings, status errors,
replies, the persistent state file and the contract-side clock. No HTTP here."""

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from fractions import Fraction
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing

from wireleap_relay.fsutil import write_atomic
from wireleap_relay.wire import b64
from wireleap_relay.wire.jsonenc import compact_bytes
from wireleap_relay.wire.status import Status

# Fixed seeds of control.md §7.1, so every run has the pubkeys of Appendix A.
CONTRACT_SEED = b"\x01" * 32
DIRECTORY_SEED = b"\x02" * 32
POF_ISSUER_SEED = b"\x05" * 32
POF_TYPE = "basic"

ROLES = ("fronting", "entropic", "backing")
STATE_FILE = "fake-state.json"

DESCRIPTIONS = {
    200: "OK",
    400: "bad request",
    403: "action not allowed",
    404: "resource not found",
    405: "HTTP method not allowed",
    409: "action conflicts with existing resource",
    500: "internal server error",
    502: "gateway is unreachable or down",
}
CHALLENGE_DESCRIPTION = "repeat request with response to challenge in headers"
UPGRADE_DESCRIPTION = "please upgrade your relay to the given version as soon as possible"

_SEMVER = re.compile(
    r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


class FakeError(Exception):
    """A status answer (control.md §1.5) raised from anywhere inside a request."""

    def __init__(self, code: int, cause: str = "") -> None:
        super().__init__(cause or DESCRIPTIONS[code])
        self.status = Status(code, DESCRIPTIONS[code], cause=cause)


@dataclass
class Reply:
    code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(obj: Any, code: int = 200, headers: dict[str, str] | None = None) -> Reply:
    # A trailing newline like Go's json.Encoder; clients parse the JSON value only.
    return Reply(code, compact_bytes(obj) + b"\n", dict(headers or {}))


def status_reply(status: Status, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status.code, status.to_json().encode() + b"\n", dict(headers or {}))


def ok_reply() -> Reply:
    return status_reply(Status(200, "OK"))


@dataclass(frozen=True)
class FakeSettings:
    """Everything configurable; durations and times are whole seconds."""

    servicekey_duration: int = 30
    submission_window: int = 60
    servicekey_value: str = "100"
    currency: str = "usd"
    fee_percent: str = "5"
    min_withdrawal: int = 1
    max_withdrawal: int = 100000
    withdrawal_delay: int = 0
    submit_delay: float = 0.0  # seconds each /submit takes, to play a slow contract
    relay_ttl: int = 900
    challenge: bool = True
    challenge_cost: int = 4
    enrollment_keys: dict[str, list[str]] = field(default_factory=dict)
    upgrade_version: str = "0.6.1"  # relay "default" channel; "" leaves the channel out
    contract_seed: bytes = CONTRACT_SEED
    directory_seed: bytes = DIRECTORY_SEED

    def __post_init__(self) -> None:
        Fraction(self.servicekey_value)  # raises ValueError on junk, before serving
        if not 0 <= Fraction(self.fee_percent) <= 100:
            raise ValueError(f"fee percent {self.fee_percent} is outside 0..100")
        if not 4 <= self.challenge_cost <= 31:
            raise ValueError(f"challenge cost {self.challenge_cost} is outside 4..31")
        unknown = set(self.enrollment_keys) - set(ROLES)
        if unknown:
            raise ValueError(f"enrollment keys for unknown roles: {sorted(unknown)}")
        if self.upgrade_version and semver_key(self.upgrade_version) is None:
            raise ValueError(f"upgrade version {self.upgrade_version!r} is not semver")
        for seed in (self.contract_seed, self.directory_seed):
            if len(seed) != 32:
                raise ValueError("ed25519 seeds are 32 bytes")

    @property
    def contract_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.contract_seed)

    @property
    def directory_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.directory_seed)


def semver_key(version: str) -> tuple | None:
    """A sort key with semver precedence (a pre-release sorts before its release), or None."""
    match = _SEMVER.match(version)
    if not match:
        return None
    core = tuple(int(part) for part in match.group(1, 2, 3))
    pre = match.group(4)
    if pre is None:
        return (core, 1, ())
    idents = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (core, 0, idents)


def go_duration(seconds: int) -> str:
    """Go's time.Duration text for whole seconds: 30s, 1m0s, 24h0m0s."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError):  # ValueError: bad lengths
        return False
    return True


def decode_key(text: Any) -> bytes | None:
    """A b64url ed25519 public key, or None when `text` is not one."""
    if not isinstance(text, str):
        return None
    try:
        raw = b64.decode(text)
    except b64.B64Error:
        return None
    return raw if len(raw) == 32 else None


def relay_auth(headers: Message, body: bytes) -> str:
    """The relay's b64url pubkey once its signature over the raw body verifies (§7.2.6)."""
    pubkey = headers.get("Wireleap-Relay-Pubkey")
    signature = headers.get("Wireleap-Relay-Signature")
    if not pubkey or not signature:
        raise FakeError(403, "auth headers for Relay missing")
    key = decode_key(pubkey)
    try:
        raw_signature = b64.decode(signature)
    except b64.B64Error:
        raw_signature = b""
    if key is None or not verifies(key, body, raw_signature):
        raise FakeError(403, "auth signature for Relay does not verify")
    return b64.encode(key)


def parse_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise FakeError(400, f"invalid JSON body: {exc}") from exc
    if not isinstance(obj, dict):
        raise FakeError(400, f"{what} is not a JSON object")
    return obj


def _empty_state() -> dict[str, Any]:
    return {
        "clock_offset": 0,
        "hooks": {"payments_unreachable": False, "withdrawal_outcome": "complete",
                  "upgrade_channels": {}, "force_upgrade": False},
        "activated": {},    # servicekey pk -> {open, close, settled}
        "used_pofs": {},    # pof digest -> servicekey pk
        "tokens": {},       # signature -> {servicekey, relay, open, close}
        "submit_requests": 0,
        "submissions": {},  # signature -> number of /submit requests carrying it
        "balances": {},     # relay pk -> {value: Fraction text, pending: int}
        "withdrawals": {},  # relay pk -> [{withdrawal: object, due: time}]
        "relays": {},       # relay pk -> {entry, expires}
        "challenges": {},   # challenge -> expiry time
    }


class FakeStore:
    """The whole fake state as one JSON document, rewritten atomically after each change.

    Callers hold `lock` for a whole request, so a request sees and saves a consistent state.
    """

    def __init__(self, state_dir: str | os.PathLike) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / STATE_FILE
        self.lock = threading.RLock()
        self.data = _empty_state()
        if self.path.exists():
            # Keys missing from an older file keep their empty defaults.
            self.data.update(json.loads(self.path.read_text()))

    def now(self) -> int:
        return int(time.time()) + self.data["clock_offset"]

    def save(self) -> None:
        text = json.dumps(self.data, indent=1, sort_keys=True)
        write_atomic(str(self.path), text.encode())
