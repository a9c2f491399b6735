"""Enrollment into a contract's directory (control.md §3): the relay entry, the bcrypt
challenge-response handshake, heartbeats and disenrollment."""

import posixpath
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import bcrypt
import gevent

from wireleap_relay import datasize
from wireleap_relay.config import ContractEntry
from wireleap_relay.contract.client import (
    BOTH,
    RELAY_CONTRACT,
    Answer,
    ControlError,
    SignedClient,
    new_idempotency_key,
    status_from,
)
from wireleap_relay.version import INTERFACES, software_version
from wireleap_relay.wire.jsonenc import compact_bytes
from wireleap_relay.wire.status import Status

CHALLENGE = Status(202, "repeat request with response to challenge in headers")
UPGRADE = Status(202, "please upgrade your relay to the given version as soon as possible")
CHALLENGE_HEADER = "Wireleap-Directory-Challenge"
RESPONSE_HEADER = "Wireleap-Directory-Response"


def enrollment_url(directory_endpoint: str) -> str:
    """`/relays` path-joined onto the directory endpoint, cleaned of double slashes."""
    parts = urlsplit(directory_endpoint)
    path = posixpath.normpath(posixpath.join(parts.path or "/", "relays"))
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def relay_entry(entry: ContractEntry, pubkey_b64: str) -> dict:
    """The body of enrollment, heartbeat and DELETE (relay 0.6.1 fields, empties left out).

    Unlike 0.6.1 it also names the upgrade_channel, as relay 0.5.0 did, so a directory that
    honours it can send the right upgrade notices.
    """
    body: dict = {
        "role": entry.role,
        "address": entry.address,
        "pubkey": pubkey_b64,
        "versions": {"software": software_version(), **dict(reversed(INTERFACES))},
    }
    if entry.key:
        body["key"] = entry.key
    if entry.upgrade_channel:
        body["upgrade_channel"] = entry.upgrade_channel
    if entry.network_usage_limit:
        body["network_usage_limit"] = datasize.format(entry.network_usage_limit)
    return body


@dataclass(frozen=True)
class Directory:
    """One contract's directory as this relay talks to it."""

    client: SignedClient
    url: str  # the enrollment URL, {dir}/relays
    entry: dict

    def enroll(self) -> Status | None:
        """First enrollment (R2/R3): all interface headers. Returns the pre-request status."""
        return self._handshake(BOTH)

    def heartbeat(self) -> Status | None:
        """R4: the same handshake without the relay-dir version header, so an outdated
        relay still hears about upgrades."""
        return self._handshake((RELAY_CONTRACT,))

    def disenroll(self) -> None:
        body = compact_bytes(self.entry)
        headers = self.client.headers(body, (RELAY_CONTRACT,), relay_version=True)
        self.client.once("DELETE", self.url, body, headers, (RELAY_CONTRACT,))

    def _handshake(self, interfaces: tuple[str, ...]) -> Status | None:
        body = compact_bytes(self.entry)
        headers = self.client.headers(body, interfaces, relay_version=True)
        headers["Idempotency-Key"] = new_idempotency_key()
        first = self.client.once("POST", self.url, body, headers, interfaces)
        status = _object_status(first)
        if status is not None and status.is_same(CHALLENGE):
            challenge = first.headers.get(CHALLENGE_HEADER)
            if not challenge:
                raise ControlError(f"response requested but no challenge provided by "
                                   f"directory {self.url}")
            headers[CHALLENGE_HEADER] = challenge
            headers[RESPONSE_HEADER] = solve(challenge)
            headers["Idempotency-Key"] = new_idempotency_key()
            second = self.client.once("POST", self.url, body, headers, interfaces)
            if second.body is None:
                raise ControlError(f"empty answer to the challenge response from {self.url}")
        return status


def solve(challenge: str) -> str:
    """bcrypt over the whole challenge at the cost it names (`<cost>~...`), as Go does:
    `$2a$` hashes, a cost below 4 taken as 10. Hashing runs in gevent's thread pool so a
    costly challenge does not stall the streams."""
    try:
        cost = int(challenge.split("~", 1)[0])
    except ValueError:
        raise ControlError(f"cannot parse the cost of challenge {challenge!r}") from None
    if cost < 4:
        cost = 10
    if cost > 31:
        raise ControlError(f"challenge cost {cost} is above bcrypt's maximum of 31")
    secret = challenge.encode()
    if len(secret) > 72:
        raise ControlError("challenge is longer than bcrypt's 72-byte limit")
    salt = bcrypt.gensalt(rounds=cost, prefix=b"2a")
    hashed = gevent.get_hub().threadpool.apply(bcrypt.hashpw, (secret, salt))
    return hashed.decode()


def _object_status(answer: Answer) -> Status | None:
    if not isinstance(answer.body, dict):
        raise ControlError(f"directory answered {answer.code} without a JSON object")
    return status_from(answer.body)
