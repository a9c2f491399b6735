"""The client side of servicekeys, as the Go `wireleap` client does it (control.md §7.3.1,
§7.6): proofs of funding, accesskey files and activation against a contract."""

import json
import os
import time
from pathlib import Path
from typing import Any

import nacl.signing
import requests

from wireleap_relay.testing.fake_state import POF_ISSUER_SEED, POF_TYPE
from wireleap_relay.wire import b64
from wireleap_relay.wire.jsonenc import compact_bytes
from wireleap_relay.wire.sharetoken import ContractData

ACCESSKEY_VERSION = "0.1.0"
# A pof's expiration is only the deadline for activating it, so make it generous.
DEFAULT_POF_LIFETIME = 30 * 24 * 3600


def make_pof(expiration: int | None = None, nonce: str | None = None) -> dict[str, Any]:
    """A pof signed by the fixed pof issuer key over "<type>:<expiration>:<nonce>"."""
    if expiration is None:
        expiration = int(time.time()) + DEFAULT_POF_LIFETIME
    nonce = nonce or os.urandom(9).hex()  # 18 hex characters, like the real issuer's
    digest = f"{POF_TYPE}:{expiration}:{nonce}"
    signature = nacl.signing.SigningKey(POF_ISSUER_SEED).sign(digest.encode()).signature
    return {"type": POF_TYPE, "expiration": expiration, "nonce": nonce,
            "signature": b64.encode(signature)}


def write_accesskey_file(path: str | os.PathLike, contract_url: str,
                         contract_pubkey: bytes, n_pofs: int) -> None:
    """An accesskey file the Go client imports with `wireleap accesskeys import file://...`."""
    accesskey = {
        "version": ACCESSKEY_VERSION,
        "contract": {"endpoint": contract_url, "public_key": b64.encode(contract_pubkey)},
        "pofs": [make_pof() for _ in range(n_pofs)],
    }
    Path(path).write_text(json.dumps(accesskey, indent=4) + "\n")


def activate_servicekey(contract_url: str, pof: dict[str, Any] | None = None,
                        timeout: float = 10.0) -> tuple[nacl.signing.SigningKey, ContractData]:
    """Activate a fresh servicekey with a new pof (or `pof`); raises requests.HTTPError."""
    servicekey = nacl.signing.SigningKey.generate()
    body = compact_bytes({"pubkey": b64.encode(bytes(servicekey.verify_key)),
                          "pof": pof or make_pof()})
    response = requests.post(
        f"{contract_url}/servicekey/activate", data=body, timeout=timeout,
        headers={"Content-Type": "application/json", "Idempotency-Key": os.urandom(16).hex()})
    response.raise_for_status()
    return servicekey, ContractData.from_dict(response.json())


class Wallet:
    """Servicekeys on demand, like the Go client with `use_on_demand`: the current one is
    used until shortly before its settlement_open, then a new one is activated."""

    def __init__(self, contract_url: str, margin: float = 2.0):
        self.contract_url = contract_url
        self.margin = margin
        self._current: tuple[nacl.signing.SigningKey, ContractData] | None = None

    def current(self) -> tuple[nacl.signing.SigningKey, ContractData]:
        if self._current is None or \
                self._current[1].settlement_open <= time.time() + self.margin:
            self._current = activate_servicekey(self.contract_url)
        return self._current
