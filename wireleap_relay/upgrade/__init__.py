"""Self-upgrade of the single-file relay (operations.md §3.8, §3.9, §6): the release a build
trusts, finding the latest version, download and signature check, the supervised switch to
the new binary, migrations and rollback."""


class UpgradeError(Exception):
    """One step of an upgrade failed; the message says which and why."""
