"""`python -m wireleap_relay.testing bench --smoke`: the benchmark's short run. No thresholds
(figures depend on the machine and its load): every row must yield a number for our relay
and, where the Go peers are present, for the Go relay."""

import json
import math
import os
import subprocess
import sys

from .conftest import ROOT


def run_smoke(tmp_path, *extra: str) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "wireleap_relay.testing", "bench", "--smoke", "--json", str(out),
         *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads(out.read_text()), done.stdout


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def test_smoke_side_by_side(peers, curl, tmp_path):
    result, stdout = run_smoke(tmp_path, "--peers", peers)
    assert result["meta"]["go"] is True
    rows = result["rows"]
    assert {"download_1", "download_3", "ttfb_1", "ttfb_3", "parallel_1", "parallel_3",
            "cpu_per_gib_1", "cpu_per_gib_3", "setup_rate", "burst_last_header",
            "burst_failed", "pss_idle", "pss_after"} <= set(rows)
    assert sum(key.startswith("per_stream_") for key in rows) == 2
    missing = {key: (row["ours"], row["go"], row["errors"]) for key, row in rows.items()
               if not (is_number(row["ours"]) and is_number(row["go"]))}
    assert not missing, stdout
    assert "ours/Go" in stdout


def test_smoke_without_the_go_peers(curl, tmp_path):
    """Where ../shared/peers is missing the bench says so and measures our relays alone."""
    result, stdout = run_smoke(tmp_path, "--peers", os.fspath(tmp_path / "no-peers"))
    assert result["meta"]["go"] is False
    assert "The Go peers are missing" in stdout
    rows = result["rows"]
    assert len(rows) >= 17
    assert all(is_number(row["ours"]) and row["go"] is None for row in rows.values()), stdout
