"""Rollups and retention on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections import defaultdict
from typing import Any

from sqlalchemy import text

from mqtthub.housekeeping import Housekeeping
from mqtthub.pipeline import RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.retention import DAY, HOUR, RetentionPolicy
from mqtthub.store import queries
from mqtthub.store.database import Store
from mqtthub.store.samples import metrics_of

T0 = 1_790_000_000.0 - 1_790_000_000.0 % DAY  # a midnight
FOREVER = RetentionPolicy(raw=None, minute=None, hour=None, day=None)


def write(store: Store, samples: list[tuple[str, float, dict[str, float]]]) -> None:
    """Store samples as sensor messages with their own ts, 1,000 per batch."""
    presence = PresenceEngine()
    for start in range(0, len(samples), 1000):
        raw = [
            RawMessage(f"devices/{d}/sensor", json.dumps({"ts": ts, **m}).encode(), 1, False, ts)
            for d, ts, m in samples[start : start + 1000]
        ]
        batch = build_batch(parse_all(raw, prefix="devices", max_payload=65536), presence=presence)
        store.write(batch)


def housekeeping(store: Store, policy: RetentionPolicy, now: float, batch: int = 50) -> Any:
    """Run one pass at ``now`` with tiny steps and no pauses."""

    async def execute_write(operation: Any, *args: Any, **kwargs: Any) -> Any:
        return store.read(operation, *args, **kwargs)

    runner = Housekeeping(
        execute_write=execute_write,
        policy=policy,
        batch_rows=batch,
        min_pause=0,
        pause_factor=0,
        clock=lambda: now,
    )
    return asyncio.run(runner.run_pass())


def random_samples(
    count: int, span: float, seed: int = 1
) -> list[tuple[str, float, dict[str, float]]]:
    rng = random.Random(seed)
    samples = {}
    for _ in range(count):
        device = f"d{rng.randrange(3)}"
        ts = T0 + round(rng.uniform(0, span), 3)
        metrics = {"temperature": round(rng.uniform(-20, 40), 2)}
        if rng.random() < 0.7:
            metrics["rssi"] = float(rng.randrange(-90, -30))
        samples[(device, ts)] = metrics
    return [(d, ts, m) for (d, ts), m in sorted(samples.items())]


def brute_force(
    samples: list[tuple[str, float, dict[str, float]]], width: float, before: float
) -> dict[tuple[str, str, float], tuple[float, float, float, int]]:
    groups: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    for device, ts, metrics in samples:
        bucket = ts - ts % width
        if bucket + width <= before:
            for metric, value in metrics.items():
                groups[(device, metric, bucket)].append(value)
    return {key: (min(v), max(v), math.fsum(v), len(v)) for key, v in groups.items()}


def stored(store: Store, table: str, column: str) -> dict[tuple[str, str, float], tuple[Any, ...]]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT device_id, metric, {column}, min, max, sum, count FROM {table}")  # noqa: S608
        )
        return {(d, m, float(t)): (lo, hi, total, n) for d, m, t, lo, hi, total, n in rows}


def assert_same(
    got: dict[tuple[str, str, float], tuple[Any, ...]],
    expected: dict[tuple[str, str, float], tuple[float, float, float, int]],
) -> None:
    assert got.keys() == expected.keys()
    for key, (lo, hi, total, n) in expected.items():
        g_lo, g_hi, g_total, g_n = got[key]
        assert (g_lo, g_hi, g_n) == (lo, hi, n), key
        assert math.isclose(g_total, total, rel_tol=1e-12, abs_tol=1e-9), key


def test_rollups_equal_a_brute_force_computation(store: Store) -> None:
    """Hourly and daily rows hold exactly the min, max, sum and count of the readings of
    each closed hour and day; the open hour and day are not rolled up yet."""
    samples = random_samples(4000, 3.5 * DAY)
    write(store, samples)
    now = T0 + 3.5 * DAY + 600
    housekeeping(store, FOREVER, now)
    assert_same(stored(store, "readings_1h", "hour"), brute_force(samples, HOUR, now - now % HOUR))
    assert_same(stored(store, "readings_1d", "day"), brute_force(samples, DAY, now - now % DAY))
    housekeeping(store, FOREVER, now)  # a second pass changes nothing
    assert_same(stored(store, "readings_1d", "day"), brute_force(samples, DAY, now - now % DAY))


def test_late_data_is_rolled_up_again(store: Store) -> None:
    """Readings that arrive for an hour and a day already rolled up change them."""
    samples = random_samples(1500, 2.5 * DAY, seed=2)
    write(store, samples)
    now = T0 + 2.5 * DAY
    housekeeping(store, FOREVER, now)
    late = [
        ("d0", T0 + 3 * HOUR + 17.5, {"temperature": 99.5}),  # a new sample in a rolled hour
        ("d1", T0 + 30 * HOUR + 1.25, {"pressure": 1000.0}),  # a new metric
        ("d9", T0 + 5 * HOUR, {"temperature": -50.0}),  # a new device
    ]
    write(store, late)
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM rollup_pending")).scalar() == 3
    housekeeping(store, FOREVER, now)
    every = sorted(samples + late)
    assert_same(stored(store, "readings_1h", "hour"), brute_force(every, HOUR, now - now % HOUR))
    assert_same(stored(store, "readings_1d", "day"), brute_force(every, DAY, now - now % DAY))
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM rollup_pending")).scalar() == 0


def test_retention_deletes_exactly_what_is_old(store: Store) -> None:
    """Samples, per-minute and hourly rows older than their retention go, in many small
    steps; everything newer stays, daily rows stay forever."""
    samples = random_samples(3000, 4 * DAY, seed=3)
    write(store, samples)
    now = T0 + 4 * DAY
    policy = RetentionPolicy(raw=DAY, minute=2 * DAY, hour=3 * DAY, day=None)
    report = housekeeping(store, policy, now, batch=37)
    with store.engine.connect() as connection:
        left = sorted(
            (d, float(ts))
            for d, ts in connection.execute(text("SELECT device_id, ts FROM samples"))
        )
        minutes = [float(m) for (m,) in connection.execute(text("SELECT minute FROM readings_1m"))]
        hours = [float(h) for (h,) in connection.execute(text("SELECT hour FROM readings_1h"))]
    assert left == [(d, ts) for d, ts, _ in samples if ts >= now - DAY]
    assert report.deleted["raw"] == len(samples) - len(left)
    assert min(minutes) >= now - 2 * DAY
    assert max(minutes) >= now - HOUR
    kept_minutes = {
        (d, m, t) for d, m, t in brute_force(samples, 60, math.inf) if t >= now - 2 * DAY
    }
    assert len(minutes) == len(kept_minutes)
    assert min(hours) >= now - 3 * DAY
    expected_days = brute_force(samples, DAY, now)
    assert_same(stored(store, "readings_1d", "day"), expected_days)  # rolled before deleting
    stats = queries.storage_stats(store.engine)
    assert stats["oldest_reading"] == min(ts for _, ts in left)
    assert stats["database_bytes"] > 0


def test_per_metric_raw_retention(store: Store) -> None:
    """rssi=1d, temperature=3d, the rest 2d: older samples lose rssi, then the others, and
    go when nothing in them is kept any more."""
    samples = [
        ("d0", T0 + h * HOUR + 5, {"temperature": float(h), "rssi": -float(h), "light": 1.0})
        for h in range(0, 96)
    ]
    write(store, samples)
    now = T0 + 96 * HOUR
    policy = RetentionPolicy(
        raw=2 * DAY, minute=None, hour=None, raw_metrics={"rssi": DAY, "temperature": 3 * DAY}
    )
    housekeeping(store, policy, now, batch=7)
    with store.engine.connect() as connection:
        rows = {
            float(ts): metrics_of(m)
            for ts, m in connection.execute(text("SELECT ts, metrics FROM samples"))
        }
    expected = {}
    for _, ts, metrics in samples:
        kept = {
            m: v
            for m, v in metrics.items()
            if ts >= now - {"rssi": DAY, "temperature": 3 * DAY}.get(m, 2 * DAY)
        }
        if kept:
            expected[ts] = kept
    assert rows == expected
    # The series falls back to per-minute rows where raw rssi is gone.
    series = queries.device_series(
        store.engine, "d0", metric="rssi", since=T0 + 10 * HOUR, until=T0 + 11 * HOUR, bucket=10
    )
    assert [(p["min"], p["count"]) for p in series] == [(-10.0, 1)]


def test_series_resolution_follows_the_bucket(store: Store) -> None:
    """Raw below a minute, then per-minute, hourly and daily rows (with the hours not rolled
    up yet read from the per-minute rows): every resolution gives the same totals."""
    samples = [("d0", T0 + i * 20.0, {"temperature": float(i % 50)}) for i in range(3 * 4320)]
    write(store, samples)
    now = T0 + 3 * DAY
    housekeeping(store, FOREVER, now - 5 * HOUR)  # hours of the last 5 h not rolled up
    for bucket, width in ((20, 20), (600, 600), (4 * HOUR, 4 * HOUR), (DAY, DAY)):
        series = queries.device_series(
            store.engine, "d0", metric="temperature", since=T0, until=now, bucket=bucket
        )
        assert len(series) == 3 * DAY / width
        assert sum(p["count"] for p in series) == len(samples)
        assert min(p["min"] for p in series) == 0.0
        assert max(p["max"] for p in series) == 49.0
