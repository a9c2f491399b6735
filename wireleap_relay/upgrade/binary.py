"""Running a command of a relay binary in the home (`stop`, `start`, `version`): the
supervisor and rollback drive the old and the new version through their own command line."""

import os
import subprocess

from wireleap_relay.home import HOME_ENV
from wireleap_relay.selfexec import command_for

TIMEOUT = 300.0  # longer than `start` waits for a daemon to come up


def run(path: str, *args: str, capture: bool = False,
        home: str | None = None) -> tuple[str, str]:
    """("" on success, else "exit status N" or why it did not run; the combined output
    when `capture`, else it goes to our stdout and stderr). `home`: the relay home for a
    binary that lives elsewhere (the download in quarantine unpacks its libraries there)."""
    out = subprocess.PIPE if capture else None
    env = None if home is None else dict(os.environ, **{HOME_ENV: home})
    try:
        result = subprocess.run([*command_for(path), *args], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT if capture else None,
                                text=True, timeout=TIMEOUT, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc), ""
    return (f"exit status {result.returncode}" if result.returncode else ""), \
        result.stdout or ""
