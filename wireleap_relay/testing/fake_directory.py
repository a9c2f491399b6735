"""Directory side of the fake (control.md §7.4): /dir/info, enrollment with the bcrypt
challenge, heartbeats with upgrade notices, disenrollment and the signed relay list.

Every method runs with the store lock held by the caller and saves after it changes state.
"""

import os
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import bcrypt

from wireleap_relay.testing.fake_state import (
    CHALLENGE_DESCRIPTION,
    ROLES,
    UPGRADE_DESCRIPTION,
    FakeError,
    FakeSettings,
    FakeStore,
    Reply,
    decode_key,
    json_reply,
    ok_reply,
    parse_object,
    relay_auth,
    semver_key,
    status_reply,
)
from wireleap_relay.wire import b64
from wireleap_relay.wire.status import Status

DIRECTORY_VERSION = "0.3.0"
CHALLENGE_TTL = 300
# What the Go client needs from an entry; key, limits and channels stay private (§3.10).
_LISTED_FIELDS = ("role", "address", "pubkey", "versions")


class Directory:
    def __init__(self, store: FakeStore, settings: FakeSettings) -> None:
        self.store = store
        self.settings = settings
        self._key = settings.directory_key
        self.pubkey = bytes(self._key.verify_key)

    @property
    def _data(self) -> dict[str, Any]:
        return self.store.data

    def upgrade_channels(self) -> dict[str, str]:
        channels = {"default": self.settings.upgrade_version} if self.settings.upgrade_version \
            else {}
        channels.update(self._data["hooks"]["upgrade_channels"])
        return channels

    def info(self, endpoint: str) -> dict[str, Any]:
        live = self._live_entries()
        keys = self.settings.enrollment_keys
        info: dict[str, Any] = {
            "public_key": b64.encode(self.pubkey),
            "version": DIRECTORY_VERSION,
            "endpoint": endpoint,
            "enrollment": {role: {"count": sum(1 for e in live if e["role"] == role),
                                  "restricted": bool(keys.get(role))} for role in ROLES},
        }
        channels = self.upgrade_channels()
        if channels:
            # No "client" channel: a newer one would make the Go client exit (§3.1).
            info["upgrade_channels"] = {"relay": channels}
        return info

    def relay_list(self) -> Reply:
        listed = {}
        for entry in sorted(self._live_entries(), key=lambda e: e["address"]):
            listed[entry["address"]] = {k: entry[k] for k in _LISTED_FIELDS if k in entry}
        reply = json_reply(listed)
        signature = self._key.sign(reply.body).signature
        reply.headers.update({"Wireleap-Directory-Pubkey": b64.encode(self.pubkey),
                              "Wireleap-Directory-Signature": b64.encode(signature)})
        return reply

    def enroll(self, headers: Message, body: bytes) -> Reply:
        """POST /dir/relays: heartbeat for a known relay, else the challenge handshake."""
        relay = relay_auth(headers, body)
        entry = _valid_entry(relay, parse_object(body, "relay entry"))
        allowed = self.settings.enrollment_keys.get(entry["role"])
        if allowed and entry.get("key") not in allowed:
            raise FakeError(400, "enrollment key is incorrect")
        now = self.store.now()
        self._purge(now)
        known = relay in self._data["relays"]
        if not known and self.settings.challenge and not self._solved(headers):
            return self._issue_challenge(now)
        self._data["relays"][relay] = {"entry": entry, "expires": now + self.settings.relay_ttl}
        self.store.save()
        # Never an upgrade notice at first enrollment: the relay ignores it there (§3.4).
        return self._heartbeat_reply(entry) if known else ok_reply()

    def disenroll(self, headers: Message, body: bytes) -> Reply:
        relay = relay_auth(headers, body)
        self._data["relays"].pop(relay, None)
        self.store.save()
        return ok_reply()

    def expire_all(self) -> int:
        count = len(self._data["relays"])
        self._data["relays"].clear()
        self.store.save()
        return count

    def _live_entries(self) -> list[dict[str, Any]]:
        now = self.store.now()
        return [r["entry"] for r in self._data["relays"].values() if r["expires"] > now]

    def _purge(self, now: int) -> None:
        for table, expiry in (("relays", lambda r: r["expires"]), ("challenges", lambda t: t)):
            items = self._data[table]
            for key in [k for k, v in items.items() if expiry(v) <= now]:
                del items[key]

    def _solved(self, headers: Message) -> bool:
        """Consume the challenge if the headers answer one we issued and still remember."""
        challenge = headers.get("Wireleap-Directory-Challenge")
        response = headers.get("Wireleap-Directory-Response")
        if not challenge or not response or challenge not in self._data["challenges"]:
            return False
        try:
            solved = bcrypt.checkpw(challenge.encode(), response.encode())
        except ValueError:  # not a bcrypt hash at all
            return False
        if solved:
            del self._data["challenges"][challenge]
        return solved

    def _issue_challenge(self, now: int) -> Reply:
        challenge = f"{self.settings.challenge_cost}~{os.urandom(16).hex()}"
        self._data["challenges"][challenge] = now + CHALLENGE_TTL
        self.store.save()
        return status_reply(Status(202, CHALLENGE_DESCRIPTION),
                            {"Wireleap-Directory-Challenge": challenge})

    def _heartbeat_reply(self, entry: dict[str, Any]) -> Reply:
        channel = entry.get("upgrade_channel") or entry.get("update_channel") or "default"
        offered = self.upgrade_channels().get(channel)
        forced = self._data["hooks"]["force_upgrade"]
        if offered and (forced or _newer(offered, _software(entry))):
            return status_reply(Status(202, UPGRADE_DESCRIPTION, cause=offered))
        return ok_reply()


def _valid_entry(relay: str, entry: dict[str, Any]) -> dict[str, Any]:
    role = entry.get("role")
    if role not in ROLES:
        raise FakeError(400, f"invalid relay role '{role}'")
    address = entry.get("address")
    scheme = urlsplit(address).scheme if isinstance(address, str) else ""
    if scheme not in ("wireleap", "https"):
        raise FakeError(400, f"invalid relay address '{address}'")
    pubkey = decode_key(entry.get("pubkey"))
    if pubkey is None or b64.encode(pubkey) != relay:
        raise FakeError(400, "relay entry pubkey does not match the signing pubkey")
    return entry


def _software(entry: dict[str, Any]) -> Any:
    versions = entry.get("versions")
    # The 2021 relay sent a single "version" instead of the "versions" object.
    return versions.get("software") if isinstance(versions, dict) else entry.get("version")


def _newer(offered: str, running: Any) -> bool:
    offered_key = semver_key(offered)
    running_key = semver_key(running) if isinstance(running, str) else None
    return offered_key is not None and running_key is not None and offered_key > running_key
