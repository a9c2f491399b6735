"""Where usage stands against the limits (control.md §6.1, wire.md §7.3): above 90 % of a
contract's limit the relay leaves that contract (soft), above 93 % it also ends the
contract's running streams (hard); the whole relay's usage at 93 % of the global limit is
hard for every contract. Pure arithmetic: the tracker acts on the result."""

import enum

SOFT = 0.90
HARD = 0.93


class Level(enum.IntEnum):
    OK = 0
    SOFT = 1  # disenrolled: new streams refused
    HARD = 2  # disabled as well: running streams ended


def threshold(limit: int, factor: float) -> int:
    """floor(limit × factor) in float64, as Go computes it."""
    return int(float(limit) * factor)


def contract_level(used: int, limit: int | None) -> Level:
    if not limit:
        return Level.OK
    if used > threshold(limit, HARD):
        return Level.HARD
    if used > threshold(limit, SOFT):
        return Level.SOFT
    return Level.OK


def levels(used: dict[str, int], limits: dict[str, int | None],
           global_limit: int) -> dict[str, Level]:
    """The level of every contract in `limits` (the configured ones, b64 keys), given the
    bytes `used` this period by every contract, configured or not."""
    if global_limit and sum(used.values()) >= threshold(global_limit, HARD):
        return dict.fromkeys(limits, Level.HARD)
    return {pk: contract_level(used.get(pk, 0), limit) for pk, limit in limits.items()}
