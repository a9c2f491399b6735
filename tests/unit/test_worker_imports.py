"""A worker process imports what serving needs and no more: every module costs each worker
its memory (cryptography with bcrypt was 8 MiB of a 41 MiB worker)."""

import subprocess
import sys

HEAVY = ("cryptography", "bcrypt", "requests", "urllib3", "docopt")


def test_the_worker_module_leaves_the_heavy_libraries_out():
    code = ("from gevent import monkey; monkey.patch_all()\n"
            "import sys, wireleap_relay.worker\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.split() == []
