"""Publish-to-stored latency under a paced load (SQLite, QoS 1).

Two kinds of level: fractions of the maximum stored rate just measured (``loads``: how
latency grows as serve nears its capacity), and fixed rates (``fixed_rates``: issue 11's
target is p99 <= 50 ms and p50 <= 10 ms at a steady 5,000 msg/s, whatever the capacity).

A paced publisher process sends every message with ``"ts"`` = the time it was sent and a
counter ``"seq"``. serve stores both as readings; ``latest_readings`` holds the newest
``seq`` per device, updated in the transaction that stores the message. This process
polls the database (read-only, every 2 ms) for ``max(seq)`` and notes when each value
first became visible. One publisher connection and one subscriber deliver in order and
the writer commits batches in order, so every message up to the visible ``max(seq)`` is
committed: a message's latency is the first poll that saw it minus its ``ts``. That is an
upper bound, at most one poll interval (plus the query) late. Each level runs on a fresh
serve and database after a short warm-up that registers the devices; besides p50/p99/max
it keeps a ``timeline`` (per second of sending: p50 and max), which shows periodic stalls.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from suite import publishers
from suite.databases import Database, provision
from suite.procs import Broker, CpuMeter, Serve, log, stop_process

POLL_S = 0.002
STALL_S = 30.0
WARMUP_RATE, WARMUP_S = 500.0, 0.5  # registers the 100 devices before anything is timed


def _poll_visible(
    path: Path, last_seq: int, publisher: subprocess.Popen[str]
) -> list[tuple[float, int]]:
    """(poll time, visible max seq) at each change, until ``last_seq`` is visible."""
    samples: list[tuple[float, int]] = []
    query = "SELECT max(value) FROM latest_readings WHERE metric = 'seq'"
    uri = f"file:{path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as connection:
        changed = time.monotonic()
        while True:
            value = connection.execute(query).fetchone()[0]
            now = time.time()
            visible = -1 if value is None else int(value)
            if not samples or visible > samples[-1][1]:
                samples.append((now, visible))
                changed = time.monotonic()
            if visible >= last_seq:
                return samples
            if publisher.poll() not in (None, 0) or time.monotonic() - changed > STALL_S:
                raise TimeoutError(
                    f"seq {visible} of {last_seq} visible, publisher {publisher.poll()}"
                )
            time.sleep(POLL_S)


def _latencies(
    database: Database, first: int, last: int, samples: list[tuple[float, int]]
) -> list[tuple[float, float]]:
    """(send time, seconds from send to first visibility) of each stored ``seq`` in first..last."""
    assert database.sqlite_path is not None
    with contextlib.closing(sqlite3.connect(database.sqlite_path)) as connection:
        sent = connection.execute(
            "SELECT value, ts FROM readings WHERE metric = 'seq' AND value BETWEEN ? AND ?",
            (first, last),
        ).fetchall()
    if len(sent) != last - first + 1:
        raise RuntimeError(f"{len(sent)} of {last - first + 1} paced messages stored")
    visible_seqs = [seq for _, seq in samples]
    result = []
    for seq, sent_at in sent:
        index = bisect.bisect_left(visible_seqs, int(seq))
        result.append((sent_at, samples[index][0] - sent_at))
    return result


def timeline(sent: list[tuple[float, float]]) -> list[list[float]]:
    """Per second of sending: [second, p50 ms, max ms] (shows periodic stalls)."""
    if not sent:
        return []
    start = min(sent_at for sent_at, _ in sent)
    seconds: dict[int, list[float]] = {}
    for sent_at, latency in sent:
        seconds.setdefault(int(sent_at - start), []).append(latency * 1000)
    return [
        [second, round(statistics.median(values), 1), round(max(values), 1)]
        for second, values in sorted(seconds.items())
    ]


def run_level(
    broker: Broker, database: Database, rate: float, seconds: float, seq: int
) -> dict[str, Any]:
    """Publish at ``rate`` for ``seconds`` starting at ``seq``; the latency distribution."""
    total = max(1, round(rate * seconds))
    publisher = publishers.launch("paced", broker.port, rate, seconds, seq, f"paced-{seq}")
    try:
        assert database.sqlite_path is not None
        samples = _poll_visible(database.sqlite_path, seq + total - 1, publisher)
        out, _ = publisher.communicate(timeout=60)
    finally:
        stop_process(publisher)
    achieved = json.loads(out.strip().splitlines()[-1])
    sent = _latencies(database, seq, seq + total - 1, samples)
    latencies = sorted(latency for _, latency in sent)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if total > 1 else latencies
    return {
        "target_rate": rate,
        "achieved_rate": achieved["rate"],
        "messages": total,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": cuts[min(98, len(cuts) - 1)] * 1000,
        "max_ms": latencies[-1] * 1000,
        "timeline": timeline(sent),
    }


def measure_level(broker: Broker, workdir: Path, rate: float, seconds: float) -> dict[str, Any]:
    """One load level on a fresh serve and database: warm-up, then the timed level.

    Also reports the mean batch size, the CPU serve used during the level and the size of
    the write-ahead log at its end. Dirty pages of earlier runs are flushed first
    (``os.sync``), so that their writeback does not compete with this level.
    """
    os.sync()
    with provision("sqlite", workdir) as database:
        serve = Serve(broker, workdir, database.url)
        try:
            serve.start()
            run_level(broker, database, WARMUP_RATE, WARMUP_S, 0)
            before = serve.stats()
            cpu = CpuMeter(serve.pid, broker.pid)
            cpu.start()
            level = run_level(broker, database, rate, seconds, round(WARMUP_RATE * WARMUP_S))
            used = cpu.stop()
            after = serve.stats()
            wal_mib = database.files_mib()[1]
        finally:
            serve.stop()
    batches = max(1, after["batches"] - before["batches"])
    stored = after["messages_stored"] - before["messages_stored"]
    return {**level, "mean_batch": stored / batches, "cpu_cores": used, "wal_end_mib": wal_mib}


def _logged(level: dict[str, Any]) -> dict[str, Any]:
    log(
        f"latency at {level['label']} ({level['achieved_rate']:,.0f} msg/s): "
        f"p50 {level['p50_ms']:.1f} ms, p99 {level['p99_ms']:.1f} ms, "
        f"mean batch {level['mean_batch']:.0f}"
    )
    return level


def measure_latency(
    broker: Broker,
    workroot: Path,
    max_rate: float,
    loads: tuple[float, ...],
    seconds: float,
    *,
    fixed_rates: tuple[float, ...] = (),
    fixed_seconds: float | None = None,
) -> dict[str, Any]:
    """Latency at each fraction in ``loads`` of ``max_rate`` and at each of ``fixed_rates``.

    Every level runs on a fresh serve (SQLite); ``fixed_seconds`` (default ``seconds``) is
    the duration of each fixed-rate level. A level's ``load`` is its rate over ``max_rate``;
    ``fixed`` says which kind it is.
    """
    levels = []
    for load in loads:
        workdir = workroot / f"latency-{round(load * 100)}"
        level = measure_level(broker, workdir, load * max_rate, seconds)
        levels.append(_logged({"load": load, "fixed": False, "label": f"{load:.0%}", **level}))
    for rate in fixed_rates:
        workdir = workroot / f"latency-{round(rate)}-per-s"
        level = measure_level(broker, workdir, rate, fixed_seconds or seconds)
        label = f"{rate:,.0f}/s"
        levels.append(_logged({"load": rate / max_rate, "fixed": True, "label": label, **level}))
    return {
        "database": "sqlite",
        "qos": 1,
        "max_rate": max_rate,
        "seconds_per_level": seconds,
        "seconds_per_fixed_level": fixed_seconds or seconds,
        "poll_interval_ms": POLL_S * 1000,
        "levels": levels,
    }
