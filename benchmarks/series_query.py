"""How fast does the device page's chart query answer for 7 days of 1-per-second data?

Fills a SQLite store through mqtthub's own writer path (so the per-minute aggregates are
built as in production) with 7 x 86,400 readings of one metric, starts ``mqtthub serve``
on it and times ``GET /api/devices/{id}/series`` for the whole week, next to the same
aggregation run directly over the raw readings (the baseline the aggregates replace).

Usage: ``.venv/bin/python benchmarks/series_query.py [--days 7] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from suite.procs import free_port

from mqtthub.pipeline import RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store.database import Store

DEVICE = "week1"


def fill(database: Path, days: int) -> tuple[float, float]:
    """Write ``days`` of 1 Hz readings; return the time range."""
    store = Store.open(f"sqlite:///{database}")
    presence = PresenceEngine()
    start = time.time() - days * 86400
    total = days * 86400
    for first in range(0, total, 20000):
        messages = [
            RawMessage(
                f"devices/{DEVICE}/sensor",
                json.dumps({"ts": start + i, "temperature": 20 + (i % 600) / 100}).encode(),
                1,
                False,
                start + i,
            )
            for i in range(first, min(first + 20000, total))
        ]
        store.write(
            build_batch(parse_all(messages, prefix="devices", max_payload=65536), presence=presence)
        )
    store.close()
    return start, start + total


def timed_get(url: str) -> tuple[float, int]:
    """Seconds for one GET and the number of points returned."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (our own server)
        points = len(json.load(response))
    return time.perf_counter() - started, points


def raw_baseline(database: Path, since: float, until: float, bucket: float) -> float:
    """Seconds for the same aggregation over the raw readings."""
    with sqlite3.connect(database) as connection:
        started = time.perf_counter()
        connection.execute(
            "SELECT CAST((ts - ?) / ? AS INTEGER) AS b, min(value), avg(value), max(value) "
            "FROM readings WHERE device_id = ? AND metric = 'temperature' AND ts >= ? AND ts < ? "
            "GROUP BY b",
            (since, bucket, DEVICE, since, until),
        ).fetchall()
        return time.perf_counter() - started


def main() -> None:
    """Fill, serve, measure, print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "data").mkdir()
        database = workdir / "data" / "mqtthub.db"
        since, until = fill(database, args.days)
        port = free_port()
        env = {
            **os.environ,
            "MQTTHUB_HTTP_PORT": str(port),
            "MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{free_port()}",
            "MQTTHUB_LOG_LEVEL": "WARNING",
        }
        serve = subprocess.Popen([sys.executable, "-m", "mqtthub", "serve"], cwd=workdir, env=env)
        try:
            url = f"http://127.0.0.1:{port}/api/devices/{DEVICE}/series?metric=temperature"
            url += f"&since={since}&until={until}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    timed_get(url)
                    break
                except OSError:
                    time.sleep(0.2)
            runs = [timed_get(url) for _ in range(args.repeat)]
            bucket = (until - since) / 500
            baseline = [raw_baseline(database, since, until, bucket) for _ in range(args.repeat)]
        finally:
            serve.terminate()
            serve.wait(30)
    api_ms = statistics.median(r[0] for r in runs) * 1000
    raw_ms = statistics.median(baseline) * 1000
    print(
        json.dumps(
            {
                "readings": args.days * 86400,
                "points": runs[0][1],
                "series_api_ms": round(api_ms, 1),
                "raw_aggregation_ms": round(raw_ms, 1),
                "ratio_api_to_raw": round(api_ms / raw_ms, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
