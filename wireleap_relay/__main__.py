"""Entry point. gevent patches the standard library here, once, before anything imports
socket, ssl or requests; library modules never patch.

Commands that run no network code skip gevent and the heavy imports, so that `version`,
`status` or `check-config` answer at once (cli.py imports each command's modules lazily).
"""

import sys

PLAIN_COMMANDS = frozenset(
    {"help", "version", "status", "check-config", "init", "stop", "reload", "restart"})


def needs_gevent(argv: list[str]) -> bool:
    """Every command but the plain ones; a usage error needs nothing."""
    return bool(argv) and argv[0] not in PLAIN_COMMANDS and not argv[0].startswith("-")


def main() -> None:
    if needs_gevent(sys.argv[1:]):
        from gevent import monkey

        monkey.patch_all()
    from wireleap_relay import cli, logsetup

    logsetup.configure()
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
