"""How this very relay runs itself again (background start, workers, upgrades)."""

import os
import sys
import zipfile


def own_command() -> list[str]:
    """The .pyz or installed script itself, or the package when run with `python -m`."""
    argv0 = sys.argv[0] if sys.argv else ""
    if not argv0 or os.path.basename(argv0) == "__main__.py":
        return [sys.executable, "-m", "wireleap_relay"]
    return [sys.executable, os.path.realpath(argv0)]


def command_for(binary: str) -> list[str]:
    """How to run another relay file (the next or previous version): a single file with
    the interpreter that runs this relay, which the operator may have chosen over the
    file's `#!/usr/bin/env python3` (`python3.12 ./wireleap-relay start`)."""
    return [sys.executable, binary] if zipfile.is_zipfile(binary) else [binary]
