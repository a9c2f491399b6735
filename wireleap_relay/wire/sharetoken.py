"""Sharetokens and their servicekey contract data (wire.md §4): parsing, digests,
signatures and the relay's verification order, with the Go relay's error texts."""

import functools
import os
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing

from wireleap_relay.wire import b64
from wireleap_relay.wire.gojson import FieldError, as_int, as_str, fields
from wireleap_relay.wire.jsonenc import compact

KEY_SIZE = 32
SIGNATURE_SIZE = 64


class SharetokenError(ValueError):
    """A sharetoken the relay refuses; the message is the text sent on the wire."""


@dataclass(frozen=True)
class ContractData:
    """The contract's signed statement about a servicekey's settlement window."""

    settlement_open: int
    settlement_close: int
    public_key: bytes
    signature: bytes

    def digest(self) -> str:
        return f"{b64.encode(self.public_key)}:{self.settlement_open}:{self.settlement_close}"

    def to_dict(self) -> dict:
        # Go marks every field omitempty: zero numbers and empty byte strings are left out.
        obj: dict[str, Any] = {}
        if self.settlement_open:
            obj["settlement_open"] = self.settlement_open
        if self.settlement_close:
            obj["settlement_close"] = self.settlement_close
        if self.public_key:
            obj["public_key"] = b64.encode(self.public_key)
        if self.signature:
            obj["signature"] = b64.encode(self.signature)
        return obj

    @classmethod
    def from_dict(cls, obj: Any, path: str = "contract") -> "ContractData":
        f = fields(obj, path, ("settlement_open", "settlement_close", "public_key", "signature"))
        return cls(
            settlement_open=as_int(f.get("settlement_open", 0), f"{path}.settlement_open"),
            settlement_close=as_int(f.get("settlement_close", 0), f"{path}.settlement_close"),
            public_key=_key(f.get("public_key", ""), f"{path}.public_key", allow_empty=True),
            signature=_bytes(f.get("signature", ""), f"{path}.signature"),
        )

    @classmethod
    def sign(cls, contract_key: nacl.signing.SigningKey, settlement_open: int,
             settlement_close: int) -> "ContractData":
        unsigned = cls(settlement_open, settlement_close, bytes(contract_key.verify_key), b"")
        signature = contract_key.sign(unsigned.digest().encode()).signature
        return cls(settlement_open, settlement_close, unsigned.public_key, signature)


@dataclass(frozen=True)
class Sharetoken:
    version: int
    public_key: bytes
    timestamp: int
    relay_pubkey: bytes
    share_key: str
    signature: bytes
    nonce: str
    contract: ContractData

    @property
    def contract_key_b64(self) -> str:
        return b64.encode(self.contract.public_key)

    @property
    def signature_b64(self) -> str:
        return b64.encode(self.signature)

    def digest(self) -> str:
        c = self.contract
        return ":".join([
            str(self.version), b64.encode(self.public_key), str(self.timestamp),
            b64.encode(self.relay_pubkey), self.share_key, self.nonce,
            b64.encode(c.public_key), b64.encode(c.signature),
            str(c.settlement_open), str(c.settlement_close),
        ])

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "public_key": b64.encode(self.public_key),
            "timestamp": self.timestamp,
            "relay_pubkey": b64.encode(self.relay_pubkey),
            "share_key": self.share_key,
            "signature": b64.encode(self.signature),
            "nonce": self.nonce,
            "contract": self.contract.to_dict(),
        }

    def to_json(self) -> str:
        """Compact JSON in Go struct order: the store file content and the wire form."""
        return compact(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any, path: str = "token") -> "Sharetoken":
        f = fields(obj, path, ("version", "public_key", "timestamp", "relay_pubkey",
                               "share_key", "signature", "nonce", "contract"))
        if "contract" not in f:
            raise FieldError(f"{path}.contract is missing")
        return cls(
            version=as_int(f.get("version", 0), f"{path}.version"),
            public_key=_key(f.get("public_key", ""), f"{path}.public_key"),
            timestamp=as_int(f.get("timestamp", 0), f"{path}.timestamp"),
            relay_pubkey=_key(f.get("relay_pubkey", ""), f"{path}.relay_pubkey"),
            share_key=as_str(f.get("share_key", ""), f"{path}.share_key"),
            signature=_bytes(f.get("signature", ""), f"{path}.signature"),
            nonce=as_str(f.get("nonce", ""), f"{path}.nonce"),
            contract=ContractData.from_dict(f["contract"], f"{path}.contract"),
        )

    @classmethod
    def mint(cls, servicekey: nacl.signing.SigningKey, relay_pubkey: bytes,
             contract: ContractData, timestamp: int, nonce: str | None = None) -> "Sharetoken":
        """Make a token the way the Go client does (wire.md §4.4): version 0, empty share key,
        a 32-hex-character nonce."""
        unsigned = cls(0, bytes(servicekey.verify_key), timestamp, relay_pubkey, "", b"",
                       nonce or os.urandom(16).hex(), contract)
        signature = servicekey.sign(unsigned.digest().encode()).signature
        return cls(**{**unsigned.__dict__, "signature": signature})


def verify(token: Sharetoken, own_pubkey: bytes, trusted_contracts: AbstractSet[bytes],
           now: int) -> None:
    """The relay's checks in Go's order and with Go's texts (wire.md §4.5).

    Raises SharetokenError. Duplicate detection belongs to the store, not here.
    """
    if token.relay_pubkey != own_pubkey:
        raise SharetokenError(
            "sharetoken relay public key mismatch: expecting "
            f"{b64.encode(own_pubkey)}, got {b64.encode(token.relay_pubkey)}")
    if token.contract.settlement_open <= now:
        raise SharetokenError("sharetoken is expired")
    if token.contract.public_key not in trusted_contracts:
        raise SharetokenError("this sharetoken was not signed by a trusted service contract")
    if not _signed(token.public_key, token.digest(), token.signature):
        raise SharetokenError("sharetoken client signature is invalid")
    contract = token.contract
    if not contract.public_key:
        raise SharetokenError("contract public key is null")
    if not _contract_signed(contract.public_key, contract.digest(), contract.signature):
        raise SharetokenError(
            "error while verifying sharetoken contract data: contract data "
            f"`{contract.digest()}` are not signed by signature `{b64.encode(contract.signature)}`")


def _signed(public_key: bytes, message: str, signature: bytes) -> bool:
    if len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message.encode(), signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


# The contract's part of a token is the same in every token of a service key: a client's
# thousands of streams need it verified once (half of a stream's ed25519 work otherwise).
_contract_signed = functools.lru_cache(maxsize=256)(_signed)


def _bytes(value: Any, path: str) -> bytes:
    try:
        return b64.decode(as_str(value, path))
    except b64.B64Error as exc:
        raise FieldError(f"{path}: {exc}") from exc


def _key(value: Any, path: str, allow_empty: bool = False) -> bytes:
    """An ed25519 public key: Go would panic on any other length (wire.md §4.5)."""
    raw = _bytes(value, path)
    if allow_empty and not raw:
        return raw
    if len(raw) != KEY_SIZE:
        raise FieldError(f"{path}: an ed25519 public key is {KEY_SIZE} bytes, got {len(raw)}")
    return raw
