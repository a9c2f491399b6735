"""Contract information (`GET <contract>/info`, control.md §2): the contract's public key,
which identifies it everywhere in the relay, and its directory."""

from dataclasses import dataclass

from wireleap_relay.contract.client import ControlError, SignedClient
from wireleap_relay.wire import b64


@dataclass(frozen=True)
class ContractInfo:
    url: str
    pubkey: bytes
    directory_endpoint: str | None


def fetch(client: SignedClient, url: str) -> ContractInfo:
    try:
        info = client.perform("GET", url + "/info")
    except ControlError as exc:
        raise ControlError(f"could not get contract info from {url}/info: {exc}",
                           exc.status) from exc
    try:
        pubkey = b64.decode(info["pubkey"])
        if len(pubkey) != 32:
            raise ValueError(f"pubkey is {len(pubkey)} bytes, expected 32")
        directory = (info.get("directory") or {}).get("endpoint")
    except (KeyError, TypeError, ValueError) as exc:
        raise ControlError(f"could not get contract info from {url}/info: bad answer: "
                           f"{exc}") from exc
    return ContractInfo(url, pubkey, directory)
