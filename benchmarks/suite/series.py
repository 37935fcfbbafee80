"""The device page's chart query over a long range: ``benchmarks/series_query.py``, run as is.

That script fills a SQLite store through mqtthub's own write path with ``days`` x 86,400
readings of one metric (1 Hz), starts ``mqtthub serve`` on it (no broker needed) and times
``GET /api/devices/{id}/series`` for the whole range (median of ``repeat``), next to the
same aggregation over the raw readings. Issue 11's figure is the week (``days=7``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from suite.procs import BENCHMARKS, clean_env, log

TIMEOUT_S = 900.0


def measure_series(days: int, repeat: int) -> dict[str, Any]:
    """Run ``series_query.py --days DAYS --repeat REPEAT``; its JSON plus the command."""
    command = [sys.executable, str(BENCHMARKS / "series_query.py")]
    command += ["--days", str(days), "--repeat", str(repeat)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"series_query.py exited {done.returncode}: {done.stderr[-1000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    log(
        f"series over {days} days: API {result['series_api_ms']} ms "
        f"(raw aggregation {result['raw_aggregation_ms']} ms)"
    )
    return {"days": days, "repeat": repeat, **result}
