"""The latest relay version on this relay's upgrade channel, as the directory of its
contract announces it (operations.md §6.2)."""

from wireleap_relay import config, identity
from wireleap_relay.contract import info as contract_info
from wireleap_relay.contract.client import ControlError, SignedClient
from wireleap_relay.home import Home
from wireleap_relay.semver import is_semver
from wireleap_relay.upgrade import UpgradeError


def latest_version(home: Home) -> str:
    """`GET <contract>/info` → directory endpoint → `GET <directory>/info` →
    `upgrade_channels.relay[<channel>]`. Raises UpgradeError."""
    try:
        cfg, _ = config.load(home.config)
    except config.ConfigError as exc:
        raise UpgradeError("; ".join(exc.problems)) from exc
    try:
        client = SignedClient(identity.load(home))
    except identity.IdentityError as exc:
        raise UpgradeError(str(exc)) from exc
    channel = cfg.upgrade_channel
    # The contract that names the channel (Go 0.6.1 picked one in map order and could miss it).
    url = next((u for u, e in cfg.contracts.items() if e.upgrade_channel),
               next(iter(cfg.contracts)))
    try:
        endpoint = contract_info.fetch(client, url).directory_endpoint
        if not endpoint:
            raise UpgradeError(f"contract {url} names no directory")
        info = client.perform("GET", endpoint.rstrip("/") + "/info")
    except ControlError as exc:
        raise UpgradeError(str(exc)) from exc
    channels = info.get("upgrade_channels") if isinstance(info, dict) else None
    relay = channels.get("relay") if isinstance(channels, dict) else None
    version = relay.get(channel) if isinstance(relay, dict) else None
    if not isinstance(version, str):
        raise UpgradeError(f"no version for channel '{channel}' is provided by directory")
    if not is_semver(version):
        raise UpgradeError(f"the directory's version for channel '{channel}' is not a "
                           f"semantic version: {version!r}")
    return version
