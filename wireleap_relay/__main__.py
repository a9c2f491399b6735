"""Entry point. gevent patches the standard library here, once, before anything imports
socket, ssl or requests; library modules never patch."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from wireleap_relay import cli, logsetup  # noqa: E402


def main() -> None:
    logsetup.configure()
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
