"""One signed HTTP client for contracts and directories (control.md §1).

Every request body is serialised once and signed over exactly the bytes sent (GET and
DELETE send `null`). Retries follow Go: up to 3 tries, a fixed pause, only for network
errors, unreadable answers and 500/502 statuses, with the same Idempotency-Key. Unlike
Go, every request has a timeout, so a hung contract cannot block the relay forever.
"""

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import requests

from wireleap_relay.identity import Identity
from wireleap_relay.version import interface_version
from wireleap_relay.wire import b64
from wireleap_relay.wire.jsonenc import compact_bytes
from wireleap_relay.wire.status import Status

log = logging.getLogger(__name__)

RELAY_DIR = "relay-dir"
RELAY_CONTRACT = "relay-contract"
_HEADER = {RELAY_DIR: "Wireleap-Relay-Dir-Version",
           RELAY_CONTRACT: "Wireleap-Relay-Contract-Version"}
RETRYABLE = {(500, "internal server error"), (502, "gateway is unreachable or down")}


class ControlError(Exception):
    """A control request failed; `status` is set when the server answered with one."""

    def __init__(self, message: str, status: Status | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class SignedClient:
    identity: Identity
    interfaces: tuple[str, ...] = (RELAY_DIR, RELAY_CONTRACT)
    tries: int = 3
    retry_pause: float = 5.0
    timeout: tuple[float, float] = (30.0, 60.0)

    def __post_init__(self) -> None:
        self.session = requests.Session()

    def request(self, method: str, url: str, payload: Any = None) -> Any:
        """Perform with retries; return the decoded JSON answer (None for an empty 2xx)."""
        body = compact_bytes(payload)
        headers = self._headers(body)
        if method == "POST":
            headers["Idempotency-Key"] = os.urandom(16).hex()
        for attempt in range(1, self.tries + 1):
            try:
                return self._once(method, url, body, headers)
            except ControlError as exc:
                if exc.status is not None and (exc.status.code, exc.status.description) \
                        not in RETRYABLE or attempt == self.tries:
                    raise
                log.info("client: error performing %s %s: %s on try %d of %d, retrying in %s"
                         "...", method, url, exc, attempt, self.tries,
                         _seconds(self.retry_pause))
                time.sleep(self.retry_pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        for name in self.interfaces:
            headers[_HEADER[name]] = interface_version(name)
        headers["Wireleap-Relay-Pubkey"] = self.identity.public_key_b64
        headers["Wireleap-Relay-Signature"] = b64.encode(self.identity.sign(body))
        return headers

    def _once(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> Any:
        try:
            resp = self.session.request(method, url, data=body, headers=headers,
                                        timeout=self.timeout)
        except requests.RequestException as exc:
            raise ControlError(f"{method} {url}: {exc}") from exc
        self._check_versions(resp)
        if not 200 <= resp.status_code < 300:
            status = _status_of(resp)
            raise ControlError(f"{method} {url}: {status.to_json()}", status)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise ControlError(f"{method} {url}: answer is not JSON: {resp.text[:200]!r}") \
                from exc

    def _check_versions(self, resp: requests.Response) -> None:
        for name in self.interfaces:
            theirs = resp.headers.get(_HEADER[name])
            ours = interface_version(name)
            if theirs and theirs.split(".")[1:2] != ours.split(".")[1:2]:
                raise ControlError(f"invalid server API version: expecting version "
                                   f"0.{ours.split('.')[1]}.x, got {theirs}")


def _status_of(resp: requests.Response) -> Status:
    try:
        obj = json.loads(resp.content)
        return Status(int(obj["code"]), str(obj["description"]), obj.get("origin", ""),
                      obj.get("cause", ""))
    except (ValueError, KeyError, TypeError):
        raise ControlError(f"error while trying to parse response body (HTTP "
                           f"{resp.status_code}): {resp.text[:200]!r}") from None


def _seconds(value: float) -> str:
    return f"{value:g}s"
