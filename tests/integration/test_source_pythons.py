"""The source package on every supported CPython the machine has (3.14 runs only as the
single file, in its chroot): a venv per version with `pip install -e .[test]`, then the
unit tests. The full suite runs on the project's own venv."""

import os
import subprocess

import pytest
from conftest import ROOT, interpreter

VENVS = os.path.join(ROOT, ".venv-pythons")


@pytest.mark.parametrize("version", ["3.10", "3.12", "3.13"])
def test_unit_tests_pass_on(version):
    python = interpreter(version)
    venv = os.path.join(VENVS, version)
    bin_python = os.path.join(venv, "bin", "python")

    def run(*command: str, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env,
                              timeout=timeout)

    if not os.path.exists(bin_python):
        made = run(*python.command, "-m", "venv", venv)
        assert made.returncode == 0, made.stderr
    # Binary wheels only where one exists: a newer sdist may need a Rust toolchain.
    installed = run(bin_python, "-m", "pip", "install", "-q", "--prefer-binary",
                    "--disable-pip-version-check", "-e", ".[test]")
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    tested = run(bin_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit")
    assert tested.returncode == 0, tested.stdout[-4000:]
    assert " passed" in tested.stdout.splitlines()[-1]
