"""One signed HTTP client for contracts and directories (control.md §1).

Every request body is serialised once and signed over exactly the bytes sent (GET and
DELETE send `null`). `perform` retries like Go: up to 3 tries, a fixed pause, only for
network errors, unreadable answers and 500/502 statuses, with the same Idempotency-Key.
`once` sends a single try (the enrollment handshake, heartbeats, DELETE). Unlike Go, every
request has a timeout, so a hung contract cannot block the relay forever.
"""

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from wireleap_relay.identity import Identity
from wireleap_relay.version import interface_version, software_version
from wireleap_relay.wire import b64
from wireleap_relay.wire.jsonenc import compact_bytes
from wireleap_relay.wire.status import Status

log = logging.getLogger(__name__)

RELAY_DIR = "relay-dir"
RELAY_CONTRACT = "relay-contract"
BOTH = (RELAY_DIR, RELAY_CONTRACT)
_HEADER = {RELAY_DIR: "Wireleap-Relay-Dir-Version",
           RELAY_CONTRACT: "Wireleap-Relay-Contract-Version"}
RETRYABLE = {(500, "internal server error"), (502, "gateway is unreachable or down")}
# Test-only: the integration tests shorten Go's 5 s pause between tries.
RETRY_PAUSE_ENV = "WIRELEAP_RETRY_PAUSE"


class ControlError(Exception):
    """A control request failed; `status` is set when the server answered with one."""

    def __init__(self, message: str, status: Status | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Answer:
    code: int
    headers: dict[str, str]
    body: Any  # decoded JSON, None for an empty body


@dataclass
class SignedClient:
    identity: Identity
    interfaces: tuple[str, ...] = BOTH
    tries: int = 3
    timeout: tuple[float, float] = (30.0, 60.0)
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def retry_pause(self) -> float:
        return float(os.environ.get(RETRY_PAUSE_ENV, "5"))

    def perform(self, method: str, url: str, payload: Any = None) -> Any:
        """Send with retries; return the decoded JSON answer (None for an empty 2xx)."""
        body = compact_bytes(payload)
        headers = self.headers(body, self.interfaces)
        if method == "POST":
            headers["Idempotency-Key"] = new_idempotency_key()
        for attempt in range(1, self.tries + 1):
            try:
                return self._send(method, url, body, headers, self.interfaces).body
            except ControlError as exc:
                retryable = exc.status is None or \
                    (exc.status.code, exc.status.description) in RETRYABLE
                if not retryable or attempt == self.tries:
                    raise
                log.info("client: error performing %s %s: %s on try %d of %d, retrying in "
                         "%gs...", method, url, exc, attempt, self.tries, self.retry_pause)
                time.sleep(self.retry_pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def once(self, method: str, url: str, body: bytes, headers: dict[str, str],
             interfaces: tuple[str, ...]) -> Answer:
        """One try with prepared body and headers; raises ControlError for non-2xx."""
        return self._send(method, url, body, headers, interfaces)

    def headers(self, body: bytes, interfaces: tuple[str, ...],
                relay_version: bool = False) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        for name in interfaces:
            headers[_HEADER[name]] = interface_version(name)
        headers["Wireleap-Relay-Pubkey"] = self.identity.public_key_b64
        headers["Wireleap-Relay-Signature"] = b64.encode(self.identity.sign(body))
        if relay_version:
            headers["Wireleap-Relay-Version"] = software_version()
        return headers

    def _send(self, method: str, url: str, body: bytes, headers: dict[str, str],
              interfaces: tuple[str, ...]) -> Answer:
        try:
            resp = self.session.request(method, url, data=body, headers=headers,
                                        timeout=self.timeout)
        except requests.RequestException as exc:
            raise ControlError(str(exc)) from exc
        _check_versions(resp, interfaces)
        if not 200 <= resp.status_code < 300:
            status = _status_of(resp)
            raise ControlError(status.to_json(), status)
        if not resp.content:
            return Answer(resp.status_code, dict(resp.headers), None)
        try:
            return Answer(resp.status_code, dict(resp.headers), resp.json())
        except ValueError as exc:
            raise ControlError(f"answer is not JSON: {resp.text[:200]!r}") from exc


def new_idempotency_key() -> str:
    return os.urandom(16).hex()


def status_from(obj: Any) -> Status | None:
    """A decoded JSON status object as a Status; None when it is not one."""
    try:
        return Status(int(obj["code"]), str(obj["description"]), str(obj.get("origin", "")),
                      str(obj.get("cause", "")))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _check_versions(resp: requests.Response, interfaces: tuple[str, ...]) -> None:
    for name in interfaces:
        theirs = resp.headers.get(_HEADER[name])
        ours = interface_version(name)
        if theirs and theirs.split(".")[1:2] != ours.split(".")[1:2]:
            raise ControlError(f"invalid server API version: expecting version "
                               f"0.{ours.split('.')[1]}.x, got {theirs}")


def _status_of(resp: requests.Response) -> Status:
    try:
        status = status_from(json.loads(resp.content))
    except ValueError:
        status = None
    if status is None:
        raise ControlError(f"error while trying to parse response body (HTTP "
                           f"{resp.status_code}): {resp.text[:200]!r}")
    return status
