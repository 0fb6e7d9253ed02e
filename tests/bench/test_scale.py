"""`python -m bench.scale` at a few thousand calls, through the files connector and through the OTLP
receiver (a real `trimloop serve`), on SQLite: every call is ingested and every field the issue asks
for is in the JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIELDS = {"records_per_s", "peak_rss_mb", "db_mb", "report_p50_ms", "report_p99_ms", "dataset_build_s",
          "retention_sweep_s", "longest_write_lock_ms"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("via", ["files", "receiver"])
def test_scale_bench_runs_small(via: str) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.scale", "--calls", "3000", "--days", "3", "--versions", "5",
                           "--per-day", "100", "--clients", "2", "--requests", "2", "--backends", "sqlite",
                           "--via", via, "--span-batch", "500"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    result = out["sqlite"]
    assert "error" not in result, result.get("error")
    assert FIELDS <= set(result) and result["via"] == via and result["calls"] == 3000
    assert result["records_per_s"] > 0 and result["report_requests"] == 4
    # 3,000 calls over 3 days and 5 versions: 200 a version-day, 100 kept each; the sweep takes the oldest
    assert result["full_records_left"] <= 3 * 5 * (100 + 100 // 10 + 1)
    assert result["records_swept"] > 0
    # the size breakdown names the log table, largest first, and adds up to no more than the file
    tables = result["db_tables_mb"]
    assert "logrecord" in tables and list(tables.values()) == sorted(tables.values(), reverse=True)
    assert sum(tables.values()) <= result["db_mb"] + 0.1
