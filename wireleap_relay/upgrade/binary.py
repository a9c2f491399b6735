"""Running a command of a relay binary in the home (`stop`, `start`, `version`): the
supervisor and rollback drive the old and the new version through their own command line."""

import subprocess

TIMEOUT = 300.0  # longer than `start` waits for a daemon to come up


def run(path: str, *args: str, capture: bool = False) -> tuple[str, str]:
    """("" on success, else "exit status N" or why it did not run; the combined output
    when `capture`, else it goes to our stdout and stderr)."""
    out = subprocess.PIPE if capture else None
    try:
        result = subprocess.run([path, *args], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT if capture else None, text=True,
                                timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc), ""
    return (f"exit status {result.returncode}" if result.returncode else ""), \
        result.stdout or ""
