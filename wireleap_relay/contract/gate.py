"""Which service contracts the relay serves right now: a small value the master (which
enrolls) hands to every worker (which serves streams), checked by each new stream
(wire.md §7.5)."""

from dataclasses import dataclass

from wireleap_relay.relay.errors import Refused
from wireleap_relay.wire import b64


@dataclass(frozen=True)
class GateState:
    started: bool = False
    configured: frozenset[bytes] = frozenset()
    enrolled: frozenset[bytes] = frozenset()

    @property
    def trusted(self) -> frozenset[bytes]:
        return self.configured

    def check(self, contract_pk: bytes) -> None:
        if not self.started:
            raise Refused("controller not started")
        if contract_pk not in self.configured:
            raise Refused(f"relay contract not found: {b64.encode(contract_pk)}")
        if contract_pk not in self.enrolled:
            raise Refused(f"relay contract not available: {b64.encode(contract_pk)}")

    def to_json(self) -> dict:
        return {"started": self.started,
                "configured": sorted(b64.encode(k) for k in self.configured),
                "enrolled": sorted(b64.encode(k) for k in self.enrolled)}

    @classmethod
    def from_json(cls, obj: dict) -> "GateState":
        return cls(bool(obj["started"]), frozenset(b64.decode(k) for k in obj["configured"]),
                   frozenset(b64.decode(k) for k in obj["enrolled"]))


class Gate:
    """A mutable holder, so running tunnels and the listener share the current state."""

    def __init__(self, state: GateState = GateState()):
        self.state = state

    @property
    def trusted(self) -> frozenset[bytes]:
        return self.state.trusted

    def check(self, contract_pk: bytes) -> None:
        self.state.check(contract_pk)
