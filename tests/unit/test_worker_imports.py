"""Each process imports what its job needs and no more: every module costs each process its
memory (cryptography with bcrypt was 8 MiB of a 41 MiB worker, prometheus_client about 10
MiB of a master, most of which run without the status API)."""

import subprocess
import sys

import pytest

HEAVY = ("cryptography", "bcrypt", "requests", "urllib3", "docopt", "prometheus_client")
MASTER_HEAVY = ("cryptography", "prometheus_client")  # bcrypt: enrollment needs it


def imported(module: str, candidates: tuple[str, ...]) -> list[str]:
    code = ("from gevent import monkey; monkey.patch_all()\n"
            f"import sys, {module}\n"
            f"print(' '.join(m for m in {candidates!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    return result.stdout.split()


@pytest.mark.parametrize(("module", "heavy"), [("wireleap_relay.worker", HEAVY),
                                               ("wireleap_relay.daemon", MASTER_HEAVY)])
def test_the_process_modules_leave_the_heavy_libraries_out(module, heavy):
    assert imported(module, heavy) == []
