"""Which service contracts the relay serves right now: a small value the master (which
enrolls) hands to every worker (which serves streams), checked by each new stream
(wire.md §7.5). A contract that reached its hard usage cap is also `disabled`: its running
streams end (wire.md §7.3)."""

from dataclasses import dataclass

import gevent.event

from wireleap_relay.relay.errors import Refused
from wireleap_relay.wire import b64


@dataclass(frozen=True)
class GateState:
    started: bool = False
    configured: frozenset[bytes] = frozenset()
    enrolled: frozenset[bytes] = frozenset()
    disabled: frozenset[bytes] = frozenset()  # over the hard usage cap

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
                "enrolled": sorted(b64.encode(k) for k in self.enrolled),
                "disabled": sorted(b64.encode(k) for k in self.disabled)}

    @classmethod
    def from_json(cls, obj: dict) -> "GateState":
        keys = lambda name: frozenset(b64.decode(k) for k in obj.get(name, ()))  # noqa: E731
        return cls(bool(obj["started"]), keys("configured"), keys("enrolled"),
                   keys("disabled"))


class Gate:
    """A worker's mutable holder, so running tunnels and the listener share the current
    state. Each admitted stream gets its contract's `cut` event, set when the contract is
    disabled; a stream admitted after it is enabled again gets a fresh one (Go's cancel
    context, renewed at enrollment)."""

    def __init__(self, state: GateState = GateState()):
        self._state = state
        self._cuts: dict[bytes, gevent.event.Event] = {}

    @property
    def state(self) -> GateState:
        return self._state

    @state.setter
    def state(self, state: GateState) -> None:
        self._state = state
        for contract_pk in state.disabled:
            cut = self._cuts.pop(contract_pk, None)
            if cut is not None:
                cut.set()

    @property
    def trusted(self) -> frozenset[bytes]:
        return self._state.trusted

    def check(self, contract_pk: bytes) -> gevent.event.Event:
        """Refused unless the contract's streams are accepted now; else the event that ends
        the stream if the contract is disabled while it runs."""
        self._state.check(contract_pk)
        return self._cuts.setdefault(contract_pk, gevent.event.Event())
