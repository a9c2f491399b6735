"""How this very relay runs itself again (background start, workers, upgrades)."""

import os
import sys


def own_command() -> list[str]:
    """The .pyz or installed script itself, or the package when run with `python -m`."""
    argv0 = sys.argv[0] if sys.argv else ""
    if not argv0 or os.path.basename(argv0) == "__main__.py":
        return [sys.executable, "-m", "wireleap_relay"]
    return [sys.executable, os.path.realpath(argv0)]
