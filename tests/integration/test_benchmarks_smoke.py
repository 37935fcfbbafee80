"""The benchmark suite's smoke run (tiny numbers): every figure is produced.

The full suite is `benchmarks/run.py` (docs/PERFORMANCE.md); it is not part of `make test`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)  # the run's own limit below; the suite's default is 120 s
def test_quick_benchmark_run_produces_json_plot_and_ratios(tmp_path: Path) -> None:
    """`benchmarks/run.py --quick` exits 0 with rates, ratios, latency, soak, presence, memory,
    series, the stored rate with 1 and 2 workers, and issue 11's targets."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is True, report["errors"]
    keys = ("broker_rate", "stored_rate", "latency", "soak", "presence", "memory", "series")
    keys += ("workers",)
    for key in (*keys, "targets"):
        assert report[key], key
    assert any(level["fixed"] for level in report["latency"]["levels"])
    assert report["soak"]["samples"]
    assert [level["workers"] for level in report["workers"]["levels"]] == [1, 2]
    assert all(level["ratio"] for level in report["workers"]["levels"])
    assert (tmp_path / "results.json").exists()
    assert (tmp_path / "results.png").stat().st_size > 10_000
