"""The Go relay's usage files, byte for byte in shape (control.md §6.3): `stats.json`
in the home (4-space indented) and one archive record per finished period
(`<archive_dir>/<relay pk>-<end ms>.json`, compact). Pure: encoding and decoding only."""

import json
from dataclasses import dataclass, field


class StatsCorrupt(ValueError):
    """stats.json holds something that is not a stats file."""


@dataclass
class Stats:
    """One period's usage: bytes per contract (b64 key), since `created_at` (ms)."""

    created_at: int
    updated_at: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, delta: dict[str, int]) -> None:
        for contract, size in delta.items():
            if size:
                self.counts[contract] = self.counts.get(contract, 0) + size


def encode_stats(stats: Stats, configured: list[str]) -> bytes:
    """As Go writes it: every configured contract listed, `{}` for one without traffic,
    contracts with counts that are no longer configured kept (Go's "legacy" ones)."""
    entries = {pk: {} for pk in configured}
    entries.update({pk: {"network_bytes": n} for pk, n in stats.counts.items() if n})
    return json.dumps({"contract_stats": dict(sorted(entries.items())),
                       "created_at": stats.created_at, "updated_at": stats.updated_at},
                      indent=4).encode()


def decode_stats(raw: bytes) -> Stats:
    try:
        obj = json.loads(raw)
        stats = Stats(_count(obj["created_at"], "created_at"),
                      _count(obj.get("updated_at", 0), "updated_at"))
        for contract, entry in (obj.get("contract_stats") or {}).items():
            stats.add({contract: _count((entry or {}).get("network_bytes", 0), contract)})
    except StatsCorrupt:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StatsCorrupt(f"not a stats file ({exc!r})") from None
    if not stats.created_at:
        raise StatsCorrupt("created_at is missing")
    return stats


def _count(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StatsCorrupt(f"{what}: {value!r} is not a whole number")
    return value


def archive_name(relay_pk: str, end_at: int) -> str:
    return f"{relay_pk}-{end_at}.json"


def encode_archive(relay_pk: str, stats: Stats, active: dict[str, bool], end_at: int,
                   now: int) -> bytes:
    """The record of a finished period. `active`: the configured contracts and whether the
    relay was enrolled in each; a contract with counts but no longer configured is
    archived as not active (and then dropped), as in Go."""
    contracts = {**dict.fromkeys(stats.counts, False), **active}
    metrics = [{"contract": pk, "active": contracts[pk],
                "network_usage_bytes": stats.counts.get(pk, 0)} for pk in sorted(contracts)]
    return json.dumps({"relay_id": relay_pk, "metrics": metrics, "start_at": stats.created_at,
                       "end_at": end_at, "updated_at": now}, separators=(",", ":")).encode()
