"""Contract side of the fake (control.md §7.3): /info, servicekey activation, sharetoken
submission, settlement and withdrawals, all kept in the FakeStore document.

Every method runs with the store lock held by the caller and saves after it changes state.
"""

import math
import os
from collections import Counter
from email.message import Message
from fractions import Fraction
from typing import Any

import nacl.signing

from wireleap_relay.testing.fake_state import (
    POF_ISSUER_SEED,
    POF_TYPE,
    FakeError,
    FakeSettings,
    FakeStore,
    decode_key,
    go_duration,
    parse_object,
    relay_auth,
    verifies,
)
from wireleap_relay.wire import b64
from wireleap_relay.wire.gojson import FieldError
from wireleap_relay.wire.sharetoken import ContractData, Sharetoken

CONTRACT_VERSION = "0.3.5"
_POF_ISSUER_PUBKEY = bytes(nacl.signing.SigningKey(POF_ISSUER_SEED).verify_key)


class ContractLedger:
    def __init__(self, store: FakeStore, settings: FakeSettings) -> None:
        self.store = store
        self.settings = settings
        self._key = settings.contract_key
        self.pubkey = bytes(self._key.verify_key)

    @property
    def _data(self) -> dict[str, Any]:
        return self.store.data

    def info(self, base_url: str) -> dict[str, Any]:
        s = self.settings
        return {
            "pubkey": b64.encode(self.pubkey),
            "version": CONTRACT_VERSION,
            "endpoint": base_url,
            "proof_of_funding": [{"type": POF_TYPE, "pubkey": b64.encode(_POF_ISSUER_PUBKEY)}],
            # Rationals in Go's big.Rat text ("1/2", never "0.5").
            "servicekey": {"currency": s.currency, "value": str(Fraction(s.servicekey_value)),
                           "duration": go_duration(s.servicekey_duration)},
            "settlement": {"fee_percent": str(Fraction(s.fee_percent)),
                           "submission_window": go_duration(s.submission_window)},
            "payout": {"endpoint": f"{base_url}/ps", "type": "dummy",
                       "min_withdrawal": s.min_withdrawal, "max_withdrawal": s.max_withdrawal,
                       "info": f"{base_url}/payout-info"},
            "directory": {"endpoint": f"{base_url}/dir",
                          "public_key": b64.encode(bytes(s.directory_key.verify_key))},
            "metadata": {"operator": "Fake Inc.", "name": "Fake Contract"},
        }

    # --- servicekey activation (§7.3.1) ---

    def activate(self, body: bytes) -> dict[str, Any]:
        request = parse_object(body, "activation request")
        servicekey = decode_key(request.get("pubkey"))
        if servicekey is None:
            raise FakeError(400, "servicekey public key is missing or invalid")
        digest = self._check_pof(request.get("pof"))
        now = self.store.now()
        settlement_open = now + self.settings.servicekey_duration
        contract = ContractData.sign(self._key, settlement_open,
                                     settlement_open + self.settings.submission_window)
        sk = b64.encode(servicekey)
        self._data["activated"][sk] = {"open": contract.settlement_open,
                                       "close": contract.settlement_close, "settled": False}
        self._data["used_pofs"][digest] = sk
        self.store.save()
        return contract.to_dict()

    def _check_pof(self, pof: Any) -> str:
        """The pof digest, once signature, expiry and single use are checked in §7.3.1 order."""
        if not isinstance(pof, dict):
            raise FakeError(400, "invalid signature")
        expiration = pof.get("expiration")
        digest = f"{pof.get('type')}:{expiration}:{pof.get('nonce')}"
        try:
            signature = b64.decode(pof.get("signature") or "")
        except b64.B64Error:
            signature = b""
        if pof.get("type") != POF_TYPE or not verifies(_POF_ISSUER_PUBKEY, digest.encode(),
                                                       signature):
            raise FakeError(400, "invalid signature")
        if not isinstance(expiration, int) or expiration <= self.store.now():
            raise FakeError(400, "expired proof of funding")
        if digest in self._data["used_pofs"]:
            raise FakeError(400, "this pof has been seen/used already")
        return digest

    # --- sharetoken submission (§7.3.2) ---

    def submit(self, headers: Message, body: bytes) -> None:
        # Counted before any check so tests can tell "submitted once" from "accepted once".
        self._data["submit_requests"] += 1
        try:
            relay = relay_auth(headers, body)
            token = _parse_token(body)
            signature = token.signature_b64
            submissions = self._data["submissions"]
            submissions[signature] = submissions.get(signature, 0) + 1
            self._check_token(relay, token)
            self._data["tokens"][signature] = {
                "servicekey": b64.encode(token.public_key), "relay": relay,
                "open": token.contract.settlement_open,
                "close": token.contract.settlement_close, "body": body.decode(),
            }
        finally:
            self.store.save()

    def _check_token(self, relay: str, token: Sharetoken) -> None:
        contract = token.contract
        if contract.public_key != self.pubkey:
            raise FakeError(400, "contract public key mismatch")
        if not (verifies(self.pubkey, contract.digest().encode(), contract.signature)
                and verifies(token.public_key, token.digest().encode(), token.signature)):
            raise FakeError(400, "invalid signature")
        activated = self._data["activated"].get(b64.encode(token.public_key))
        window = (contract.settlement_open, contract.settlement_close)
        if activated is None or (activated["open"], activated["close"]) != window:
            raise FakeError(400, "sharetoken submission rejected")
        if b64.encode(token.relay_pubkey) != relay:
            raise FakeError(400, "sharetoken submission rejected")
        now = self.store.now()
        if now < contract.settlement_open:
            raise FakeError(400, "settlement window not yet open")
        if now >= contract.settlement_close:
            raise FakeError(400, "settlement window already closed")
        if token.signature_b64 in self._data["tokens"]:
            raise FakeError(409, "duplicate sharetoken")

    # --- settlement and payouts (§7.3.3, §7.3.4) ---

    def settle(self) -> None:
        """Pay out every servicekey whose window closed, then finish due withdrawals."""
        now = self.store.now()
        changed = False
        for servicekey, activated in self._data["activated"].items():
            if not activated["settled"] and activated["close"] <= now:
                self._distribute(servicekey)
                activated["settled"] = True
                changed = True
        if self._finish_withdrawal(now) or changed:
            self.store.save()

    def _distribute(self, servicekey: str) -> None:
        counts = Counter(t["relay"] for t in self._data["tokens"].values()
                         if t["servicekey"] == servicekey)
        total = sum(counts.values())
        s = self.settings
        pool = Fraction(s.servicekey_value) * (100 - Fraction(s.fee_percent)) / 100
        for relay, n in counts.items():
            balance = self._balance(relay)
            balance["value"] = str(Fraction(balance["value"]) + pool * n / total)

    def _finish_withdrawal(self, now: int) -> bool:
        outcome = self._data["hooks"]["withdrawal_outcome"]
        changed = False
        for relay, records in self._data["withdrawals"].items():
            # A new withdrawal is refused while one is pending, so only the last can be.
            record = records[-1]
            withdrawal = record["withdrawal"]
            if withdrawal["state"] != "pending" or record["due"] > now:
                continue
            balance = self._balance(relay)
            if outcome == "complete":
                balance["value"] = str(Fraction(balance["value"]) + balance["pending"])
                withdrawal["receipt"] = {"fake": True}
            balance["pending"] = 0
            withdrawal["state"] = outcome
            withdrawal["state_changed"] = now
            changed = True
        return changed

    def balance(self, relay: str) -> dict[str, Any]:
        self.settle()
        balance = self._data["balances"].get(relay, {"value": "0", "pending": 0})
        out: dict[str, Any] = {"currency": self.settings.currency,
                               "available": math.floor(Fraction(balance["value"]))}
        if balance["pending"]:
            out["pending"] = balance["pending"]
        return out

    def tokens(self, relay: str) -> dict[str, int]:
        self.settle()
        now = self.store.now()
        n = sum(1 for t in self._data["tokens"].values()
                if t["relay"] == relay and t["open"] <= now < t["close"])
        return {relay: n} if n else {}

    def last_withdrawal(self, relay: str) -> dict[str, Any] | None:
        self.settle()
        records = self._data["withdrawals"].get(relay)
        return records[-1]["withdrawal"] if records else None

    def withdraw(self, relay: str, body: bytes) -> dict[str, Any]:
        self.settle()
        amount, kind, destination = self._withdrawal_request(body)
        balance = self._balance(relay)
        if balance["pending"]:
            raise FakeError(409, "a withdrawal is already pending")
        if amount > math.floor(Fraction(balance["value"])):
            raise FakeError(403, "insufficient balance to complete request")
        if self._data["hooks"]["payments_unreachable"]:
            raise FakeError(
                502, "payment system is unreachable or down, please try again later")
        now = self.store.now()
        withdrawal = {"id": f"wd_{os.urandom(8).hex()}", "state": "pending",
                      "state_changed": now, "amount": amount, "type": kind,
                      "destination": destination}
        balance["pending"] = -amount
        self._data["withdrawals"].setdefault(relay, []).append(
            {"withdrawal": withdrawal, "due": now + self.settings.withdrawal_delay})
        self.store.save()
        return withdrawal

    def _withdrawal_request(self, body: bytes) -> tuple[int, str, str]:
        request = parse_object(body, "withdrawal request")
        amount = request.get("amount", 0)
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise FakeError(400, "withdrawal amount is not an integer")
        if amount <= 0:
            raise FakeError(400, "withdrawal amount is invalid (<= 0)")
        kind, destination = request.get("type"), request.get("destination")
        if not kind or not isinstance(kind, str):
            raise FakeError(400, "withdrawal request type is missing")
        if not destination or not isinstance(destination, str):
            raise FakeError(400, "withdrawal destination is missing")
        if not self.settings.min_withdrawal <= amount <= self.settings.max_withdrawal:
            raise FakeError(400, "withdrawal amount out of bounds")
        return amount, kind, destination

    def _balance(self, relay: str) -> dict[str, Any]:
        return self._data["balances"].setdefault(relay, {"value": "0", "pending": 0})


def _parse_token(body: bytes) -> Sharetoken:
    try:
        return Sharetoken.from_dict(parse_object(body, "sharetoken"))
    except FieldError as exc:
        raise FakeError(400, str(exc)) from exc
