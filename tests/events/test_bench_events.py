"""`python -m bench.events --quick` runs end to end (issue 16's benchmark, small): a sandbox,
the initial `hub sync`, `hub listen` as a subprocess, 5 changes per second for 20 s through
Salesforce and SAP, and a latency table in which every change reached the other systems."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_quick_events_benchmark_prints_latencies_and_loses_nothing() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.events", "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    out = done.stdout
    assert done.returncode == 0, (out + done.stderr)[-3000:]
    assert "Traceback" not in out + done.stderr, (out + done.stderr)[-3000:]
    header = re.search(r"^changes\s+n\s+p50\s+p95\s+p99\s+max\s+lost\s+write failed", out, re.M)
    assert header, out
    rows = {
        m.group(1): m.groups()[1:]
        for m in re.finditer(
            r"^(all|Salesforce -> SAP, billing|SAP -> Salesforce, billing)\s+(\d+)\s+([\d.]+)\s+"
            r"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)",
            out,
            re.M,
        )
    }
    assert set(rows) == {"all", "Salesforce -> SAP, billing", "SAP -> Salesforce, billing"}, out
    n, p50, p95, p99, peak, lost, failed = rows["all"]
    assert int(n) == 100, out  # 5 changes/s for 20 s
    assert int(lost) == 0 and int(failed) == 0, out
    assert 0 < float(p50) <= float(p95) <= float(p99) <= float(peak), out
    assert re.search(r"^target p95 < 10 s, p99 < 30 s, none lost: (PASS|FAIL)", out, re.M), out
    assert re.search(r"^CPU: hub listen [\d.]+ s, this process", out, re.M), out
