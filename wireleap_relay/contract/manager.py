"""The relay's standing with each of its service contracts: contract info, enrollment,
heartbeats, disenrollment, and the gate that admits streams only for contracts the relay
is enrolled in right now (wire.md §7.5, control.md §3)."""

import logging
from collections.abc import Callable
from dataclasses import dataclass

import gevent

from wireleap_relay import skipversion
from wireleap_relay.config import Config, ContractEntry
from wireleap_relay.contract import info as contract_info
from wireleap_relay.contract.client import ControlError, SignedClient
from wireleap_relay.contract.directory import UPGRADE, Directory, enrollment_url, relay_entry
from wireleap_relay.relay.errors import Refused
from wireleap_relay.semver import is_semver
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


class ContractManager:
    def __init__(self, client: SignedClient, cfg: Config, home_root: str):
        self.client = client
        self.cfg = cfg
        self.home_root = home_root
        self.contracts: dict[bytes, Contract] = {}
        self.started = False

    def load(self) -> None:
        """Read every configured contract's /info: its key and its directory."""
        for url, entry in self.cfg.contracts.items():
            try:
                info = contract_info.fetch(self.client, url)
            except ControlError as exc:
                raise EnrollmentFailed(f"could not get pubkey for {url}: {exc}") from exc
            if not info.directory_endpoint:
                raise EnrollmentFailed(f"could not get directory URL for {url}")
            directory = Directory(self.client, enrollment_url(info.directory_endpoint),
                                  relay_entry(entry, self.client.identity.public_key_b64))
            self.contracts[info.pubkey] = Contract(url, entry, info.pubkey, directory)

    # --- the gate, used by every new stream ---------------------------------------------

    @property
    def trusted(self) -> set[bytes]:
        return set(self.contracts)

    @property
    def urls(self) -> dict[bytes, str]:
        return {pk: c.url for pk, c in self.contracts.items()}

    def check(self, contract_pk: bytes) -> None:
        if not self.started:
            raise Refused("controller not started")
        contract = self.contracts.get(contract_pk)
        if contract is None:
            raise Refused(f"relay contract not found: {b64.encode(contract_pk)}")
        if not contract.enrolled:
            raise Refused(f"relay contract not available: {b64.encode(contract_pk)}")

    # --- enrollment ----------------------------------------------------------------------

    def enroll_all(self) -> None:
        """Enroll into every directory; on any failure undo the ones that worked (unlike
        Go 0.6.1, which leaves them listed until their TTL runs out) and raise."""
        for contract in self.contracts.values():
            try:
                contract.directory.enroll()
            except ControlError as exc:
                self.disenroll_all()
                raise EnrollmentFailed(f"could not perform challenge-response proof of work "
                                       f"for contract {contract.url}: {exc}") from exc
            contract.enrolled = True
            log.info("Enrolled successfully as %s relay into %s", contract.entry.role,
                     contract.url)
        self.started = True

    def heartbeat_all(self, on_upgrade: Callable[[str], None]) -> None:
        for contract in self.contracts.values():
            if not contract.enrolled:
                continue
            try:
                status = contract.directory.heartbeat()
            except ControlError as exc:
                log.info("could not send heartbeat to directory %s: %s",
                         contract.directory.url, exc)
                continue
            if status is not None and status.is_same(UPGRADE):
                on_upgrade(status.cause)

    def run_heartbeats(self, interval: float, on_upgrade: Callable[[str], None]) -> None:
        """The heartbeat loop (a greenlet): the first beat one interval after start."""
        while True:
            gevent.sleep(interval)
            self.heartbeat_all(on_upgrade)

    def disenroll_all(self) -> None:
        """DELETE from every directory we enrolled in, once each; streams for these
        contracts are refused from now on."""
        self.started = False
        for contract in self.contracts.values():
            if not contract.enrolled:
                continue
            contract.enrolled = False
            try:
                contract.directory.disenroll()
                log.info("disenrolled from %s", contract.url)
            except ControlError as exc:
                log.info("error while disenrolling from %s: %s", contract.directory.url, exc)


def upgrade_notice_logger(home_root: str, auto_upgrade: bool) -> Callable[[str], None]:
    """Until self-upgrade exists: say once per version that one is available, and remember
    it in the skip file (operations.md §6.10 step 3)."""
    def on_upgrade(version: str) -> None:
        if not is_semver(version) or skipversion.read(home_root) == version:
            return
        reason = "this binary was not built with upgrade support" if auto_upgrade \
            else "'auto_upgrade' is disabled"
        log.info("There is a new wireleap-relay version available: %s. Since %s, please "
                 "upgrade manually.", version, reason)
        try:
            skipversion.write(home_root, version)
            log.info("Skipping version %s", version)
        except OSError as exc:
            log.info("Could not persist skipped version %s: %s", version, exc)
    return on_upgrade
