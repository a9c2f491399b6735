"""The relay's standing with each of its service contracts: contract info, enrollment,
heartbeats, disenrollment, and the gate that admits streams only for contracts the relay
is enrolled in right now (wire.md §7.5, control.md §3)."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent.lock

from wireleap_relay.config import Config, ContractEntry
from wireleap_relay.contract import info as contract_info
from wireleap_relay.contract.client import ControlError, SignedClient
from wireleap_relay.contract.directory import UPGRADE, Directory, enrollment_url, relay_entry
from wireleap_relay.contract.gate import GateState
from wireleap_relay.home import Home
from wireleap_relay.upgrade import auto
from wireleap_relay.usage.caps import Level
from wireleap_relay.wire import b64

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 300.0


class EnrollmentFailed(Exception):
    pass


@dataclass
class Contract:
    url: str
    entry: ContractEntry
    pubkey: bytes
    directory: Directory
    enrolled: bool = False
    last_heartbeat: float | None = None  # epoch seconds of the last enrollment POST taken
    capped: Level = Level.OK  # set by the usage caps; not OK: stays out of the directory

    @property
    def key_b64(self) -> str:
        return b64.encode(self.pubkey)


class ContractManager:
    def __init__(self, client: SignedClient, cfg: Config, home_root: str):
        self.client = client
        self.cfg = cfg
        self.home_root = home_root
        self.contracts: dict[bytes, Contract] = {}
        self.started = False
        # Heartbeats, reload and stop all talk to directories and change `contracts`: one
        # at a time, or a heartbeat could re-enroll a contract that a reload just removed.
        self._busy = gevent.lock.RLock()

    def load(self) -> None:
        """Read every configured contract's /info: its key and its directory."""
        self.contracts = {c.pubkey: c for c in self._lookup(self.cfg.contracts)}

    def _lookup(self, entries: dict[str, ContractEntry]) -> list[Contract]:
        found = []
        for url, entry in entries.items():
            try:
                info = contract_info.fetch(self.client, url)
            except ControlError as exc:
                raise EnrollmentFailed(f"could not get pubkey for {url}: {exc}") from exc
            if not info.directory_endpoint:
                raise EnrollmentFailed(f"could not get directory URL for {url}")
            directory = Directory(self.client, enrollment_url(info.directory_endpoint),
                                  relay_entry(entry, self.client.identity.public_key_b64))
            found.append(Contract(url, entry, info.pubkey, directory))
        return found

    @property
    def urls(self) -> dict[bytes, str]:
        return {pk: c.url for pk, c in self.contracts.items()}

    def gate_state(self) -> GateState:
        return GateState(self.started, frozenset(self.contracts),
                         frozenset(pk for pk, c in self.contracts.items() if c.enrolled),
                         frozenset(pk for pk, c in self.contracts.items()
                                   if c.capped == Level.HARD))

    # --- enrollment ----------------------------------------------------------------------

    def enroll_all(self) -> None:
        """Enroll into every directory, but for contracts over a usage cap; on any failure
        undo the ones that worked (unlike Go 0.6.1, which leaves them listed until their
        TTL runs out) and raise."""
        with self._busy:
            self._enroll_all()

    def _enroll_all(self) -> None:
        for contract in self.contracts.values():
            if contract.capped:
                log.info("not enrolling into %s: its network usage is over the cap",
                         contract.url)
                continue
            try:
                self._enroll(contract)
            except ControlError as exc:
                self.disenroll_all()
                raise EnrollmentFailed(f"could not perform challenge-response proof of work "
                                       f"for contract {contract.url}: {exc}") from exc
        self.started = True

    def _enroll(self, contract: Contract) -> None:
        contract.directory.enroll()
        contract.enrolled = True
        contract.last_heartbeat = time.time()
        log.info("Enrolled successfully as %s relay into %s", contract.entry.role,
                 contract.url)

    def heartbeat_all(self, on_upgrade: Callable[[str], None]) -> None:
        """A heartbeat for every enrolled contract; contracts that are not enrolled (added
        by a reload whose enrollment failed) get another enrollment attempt."""
        with self._busy:
            if self.started:
                self._heartbeat_all(on_upgrade)

    def _heartbeat_all(self, on_upgrade: Callable[[str], None]) -> None:
        for contract in list(self.contracts.values()):
            try:
                if not contract.enrolled:
                    if not contract.capped:
                        self._enroll(contract)
                    continue
                status = contract.directory.heartbeat()
            except ControlError as exc:
                log.info("could not send heartbeat to directory %s: %s",
                         contract.directory.url, exc)
                continue
            contract.last_heartbeat = time.time()
            if status is not None and status.is_same(UPGRADE):
                on_upgrade(status.cause)

    def disenroll_all(self) -> None:
        """DELETE from every directory we enrolled in, once each; streams for these
        contracts are refused from now on."""
        with self._busy:
            self.started = False
            for contract in self.contracts.values():
                self._disenroll(contract)

    def _disenroll(self, contract: Contract) -> None:
        if not contract.enrolled:
            return
        contract.enrolled = False
        try:
            contract.directory.disenroll()
            log.info("disenrolled from %s", contract.url)
        except ControlError as exc:
            log.info("error while disenrolling from %s: %s", contract.directory.url, exc)

    # --- usage caps (control.md §6.1) ---------------------------------------------------

    def apply_caps(self, levels: dict[str, Level]) -> bool:
        """Act on each contract's cap level (b64 keys): leave the directory at SOFT, also
        end running streams at HARD, come back when OK again (a new period, a higher
        limit). Before the first enrollment (and once stopping) the levels are only noted:
        `enroll_all` leaves out the capped contracts. True if the gate changed."""
        with self._busy:
            before = self.gate_state()
            for contract in list(self.contracts.values()):
                level = levels.get(contract.key_b64, Level.OK)
                if self.started:
                    self._apply_cap(contract, level)
                else:
                    contract.capped = level
            return self.gate_state() != before

    def _apply_cap(self, contract: Contract, level: Level) -> None:
        if level == Level.OK:
            if contract.capped:
                contract.capped = Level.OK
                try:
                    self._enroll(contract)
                    log.info("Network Cap: re-enrolled into %s", contract.url)
                except ControlError as exc:
                    log.info("Network Cap: could not re-enroll into %s, will retry with "
                             "the next heartbeat: %s", contract.url, exc)
            return
        if contract.enrolled:
            log.info("Network Cap: disenrolling from contract %s", contract.key_b64)
            self._disenroll(contract)
        if level == Level.HARD and contract.capped != Level.HARD:
            log.info("Network Cap: disabling contract %s, ending its streams",
                     contract.key_b64)
        contract.capped = level

    # --- reload --------------------------------------------------------------------------

    def prepare(self, cfg: Config) -> "Change":
        """What moving to `cfg` takes, found without changing anything: the contracts it
        adds, looked up. Raises EnrollmentFailed if one cannot be looked up or a
        contract's role changed (a directory knows a relay by its role)."""
        with self._busy:
            by_url = {c.url: c for c in self.contracts.values()}
            for url, entry in cfg.contracts.items():
                if url in by_url and by_url[url].entry.role != entry.role:
                    raise EnrollmentFailed(f"forbidden change of role for {url}: "
                                           f"{by_url[url].entry.role} -> {entry.role}")
            added = self._lookup({u: e for u, e in cfg.contracts.items() if u not in by_url})
            return Change(cfg, added)

    def apply(self, change: "Change") -> None:
        """Move to a prepared config: removed contracts are disenrolled, new ones enrolled
        (a failure is retried with the next heartbeat), kept ones carry their new entry to
        the directory at once."""
        with self._busy:
            self._apply(change)

    def _apply(self, change: "Change") -> None:
        cfg = change.cfg
        for contract in list(self.contracts.values()):
            if contract.url not in cfg.contracts:
                self._disenroll(contract)
                del self.contracts[contract.pubkey]
        for contract in self.contracts.values():
            entry = cfg.contracts[contract.url]
            contract.entry = entry
            contract.directory = Directory(self.client, contract.directory.url,
                                           relay_entry(entry, self.client.identity
                                                       .public_key_b64))
        self.cfg = cfg
        for contract in change.added:
            self.contracts[contract.pubkey] = contract
            try:
                self._enroll(contract)
            except ControlError as exc:
                log.info("could not enroll into %s, will retry with the next heartbeat: %s",
                         contract.url, exc)


@dataclass(frozen=True)
class Change:
    """A config the manager can move to: the contracts it adds, already looked up."""

    cfg: Config
    added: list[Contract]


def upgrade_notice_logger(home_root: str, auto_upgrade: bool) -> auto.NoticeHandler:
    """The heartbeat's reaction to an upgrade notice (operations.md §6.10): upgrade when the
    build supports it and `auto_upgrade` is on, else say once that a version is out."""
    return auto.notice_handler(Home(home_root), auto_upgrade)
