"""What `GET /api/status` answers (control.md §6.2), in the field order of relay 0.6.1's
`managerStatus`, built from the contract manager's view and the usage tracker's. Pure."""

from collections.abc import Iterable
from typing import Protocol

from wireleap_relay.wire import b64
from wireleap_relay.wire.jsonenc import compact_bytes


class UsageSource(Protocol):
    """Network usage as the master's usage tracker reports it (control.md §6.1)."""

    def status_json(self) -> dict | None:
        """The "network_usage" object; None when tracking is off."""

    def contract_json(self, contract_pk_b64: str) -> dict:
        """{"network_cap": int | None, "network_usage": int, "network_cap_reached": bool}"""


class ContractView(Protocol):
    """One contract as the manager holds it (contract/manager.py `Contract`)."""

    pubkey: bytes
    enrolled: bool

    @property
    def entry(self): ...  # config.ContractEntry: address and role


def status_document(started: bool, contracts: Iterable[ContractView],
                    usage: UsageSource) -> dict:
    relay_status = []
    for contract in contracts:
        pk = b64.encode(contract.pubkey)
        use = usage.contract_json(pk)
        relay_status.append({
            "id": pk,
            "address": contract.entry.address,
            "role": contract.entry.role,
            "status": {"enrolled": contract.enrolled,
                       "network_cap_reached": use["network_cap_reached"]},
            "network_cap": use["network_cap"],
            "network_usage": use["network_usage"],
        })
    return {"controller_started": started, "network_usage": usage.status_json(),
            "relay_status": relay_status}


def status_body(document: dict) -> bytes:
    """Compact, with no newline: Go's json.Marshal written as it is."""
    return compact_bytes(document)


def method_not_allowed_cause(method: str, supported: tuple[str, ...]) -> str:
    """common's MethodGate names the method and the supported ones as Go prints a slice."""
    return (f"request uses unsupported HTTP method '{method}', supported methods are: "
            f"[{' '.join(supported)}]")
