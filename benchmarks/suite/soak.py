"""serve's resident memory under a long steady load (issue 11: RSS flat at 80 % of capacity).

A fresh serve on SQLite; the latency suite's paced publisher (one connection, QoS 1, the
throughput suite's 7-value message plus ``seq`` and ``ts`` = send time, 100 devices) sends
at ``fraction`` x the SQLite QoS 1 stored rate that the rates section just measured, for
``seconds``. Every ``interval`` s this process samples serve's VmRSS, ``/api/stats``
(stored, queue depth), the broker's VmRSS, the sizes of the database file and its
write-ahead log, and how old the newest stored message is (now minus the largest ``ts`` in
``latest_readings``, read-only): that age stays near the publish-to-stored latency while
serve keeps up, and grows when it falls behind.

Reported: RSS at the first sample after ``warmup`` s, at the last sample before the
publisher stops, the maximum, the growth after warm-up (MiB and %), and the least-squares
slope after warm-up (MiB per minute); the rate achieved, messages stored, the largest
queue depth and the largest age of the newest stored message. "Flat" means the growth
after warm-up is under :data:`FLAT_PCT` % of the RSS after warm-up.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from suite import publishers
from suite.databases import Database, provision
from suite.procs import Broker, Serve, log, rss_kib, stop_process, wait_until

FLAT_PCT = 5.0
MIN_FREE_GIB = 2.0  # the soak stops early rather than fill the disk (a growing WAL)
DRAIN_S = 120.0  # after the publisher's last message, everything is stored within this


def _newest_ts(database: Database) -> float | None:
    """The largest publish time stored so far (the paced payloads carry it as ``ts``)."""
    assert database.sqlite_path is not None
    uri = f"file:{database.sqlite_path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as connection:
        row = connection.execute(
            "SELECT max(ts) FROM latest_readings WHERE metric = 'seq'"
        ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def _sample(serve: Serve, broker: Broker, database: Database, started: float) -> dict[str, Any]:
    stats = serve.stats()
    now = time.time()
    newest = _newest_ts(database)
    db_mib, wal_mib = database.files_mib()
    return {
        "t_s": round(time.monotonic() - started, 2),
        "rss_mib": rss_kib(serve.pid)["VmRSS"] / 1024,
        "broker_rss_mib": rss_kib(broker.pid)["VmRSS"] / 1024,
        "stored": stats["messages_stored"],
        "queue_depth": stats.get("queue_depth", 0),
        "newest_age_s": None if newest is None else round(now - newest, 3),
        "db_mib": round(db_mib, 1),
        "wal_mib": round(wal_mib, 1),
    }


def _slope_mib_per_min(samples: list[dict[str, Any]]) -> float | None:
    if len(samples) < 2:
        return None
    xs = [s["t_s"] / 60 for s in samples]
    ys = [s["rss_mib"] for s in samples]
    return statistics.linear_regression(xs, ys).slope


def summarise(samples: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    """RSS after warm-up, at the end, max, growth and slope after warm-up; flat or not."""
    after = [s for s in samples if s["t_s"] >= warmup] or samples[-1:]
    start, end = after[0]["rss_mib"], after[-1]["rss_mib"]
    growth = end - start
    growth_pct = 100 * growth / start
    ages = [s["newest_age_s"] for s in samples if s["newest_age_s"] is not None]
    return {
        "rss_start_mib": samples[0]["rss_mib"],
        "rss_after_warmup_mib": start,
        "rss_end_mib": end,
        "rss_max_mib": max(s["rss_mib"] for s in samples),
        "growth_after_warmup_mib": growth,
        "growth_after_warmup_pct": growth_pct,
        "slope_after_warmup_mib_per_min": _slope_mib_per_min(after),
        "flat": growth_pct < FLAT_PCT,
        "broker_rss_start_mib": samples[0]["broker_rss_mib"],
        "broker_rss_end_mib": samples[-1]["broker_rss_mib"],
        "max_queue_depth": max(s["queue_depth"] for s in samples),
        "db_end_mib": samples[-1]["db_mib"],
        "wal_max_mib": max(s["wal_mib"] for s in samples),
        "wal_end_mib": samples[-1]["wal_mib"],
        "max_newest_age_s": max(ages) if ages else None,
        "end_newest_age_s": ages[-1] if ages else None,
    }


def measure_soak(
    broker: Broker,
    workroot: Path,
    max_rate: float,
    *,
    fraction: float,
    seconds: float,
    interval: float,
    warmup: float,
) -> dict[str, Any]:
    """Run the steady load for ``seconds`` and sample every ``interval`` s (see the module)."""
    rate = fraction * max_rate
    total = max(1, round(rate * seconds))
    workdir = workroot / "soak"
    samples: list[dict[str, Any]] = []
    with provision("sqlite", workdir) as database:
        serve, publisher = Serve(broker, workdir, database.url), None
        try:
            serve.start()
            started = time.monotonic()
            publisher = publishers.launch("paced", broker.port, rate, seconds, 0, "soak-pub")
            samples.append(_sample(serve, broker, database, started))
            while publisher.poll() is None and time.monotonic() - started < seconds:
                time.sleep(max(0.0, started + len(samples) * interval - time.monotonic()))
                samples.append(_sample(serve, broker, database, started))
                if shutil.disk_usage(workdir).free < MIN_FREE_GIB * 2**30:
                    raise RuntimeError(f"soak stopped: under {MIN_FREE_GIB} GiB free {samples[-1]}")
            out, _ = publisher.communicate(timeout=DRAIN_S)
            achieved = json.loads(out.strip().splitlines()[-1])
            wait_until(lambda: serve.stats()["messages_stored"] >= total, DRAIN_S, "soak stored")
            final = serve.stats()
        finally:
            stop_process(publisher)
            serve.stop()
    result = {
        "database": "sqlite",
        "qos": 1,
        "fraction": fraction,
        "target_rate": rate,
        "achieved_rate": achieved["rate"],
        "seconds": seconds,
        "interval_s": interval,
        "warmup_s": warmup,
        "messages": total,
        "stored": final["messages_stored"],
        "dead_letters": final["dead_letters"],
        "flat_pct": FLAT_PCT,
        **summarise(samples, warmup),
        "samples": samples,
    }
    log(
        f"soak at {fraction:.0%} ({result['achieved_rate']:,.0f} msg/s, {seconds:.0f} s): "
        f"RSS {result['rss_after_warmup_mib']:.1f} -> {result['rss_end_mib']:.1f} MiB after "
        f"warm-up (max {result['rss_max_mib']:.1f}), queue max {result['max_queue_depth']}"
    )
    return result
