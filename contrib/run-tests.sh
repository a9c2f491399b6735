#!/usr/bin/env bash
# Runs the whole test suite (what `make test` and CI run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
