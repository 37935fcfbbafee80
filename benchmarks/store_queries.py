"""How fast do the API's reading queries answer on a day of 1 Hz data?

Fills a fresh store through ``Store.write`` with one device sending the throughput suite's
7-value sensor message every second for ``--hours`` (plus a ``battery`` heartbeat every 5
minutes, a metric it sends only now and then) and 99 more devices with an hour of data
each, then times the queries behind ``GET /api/devices/{id}/readings``, ``/series`` and the
latest values of the device list and detail (median of ``--repeat`` after one warm-up).

Only ``Store.open``, ``Store.write``, the pipeline and ``store.queries`` are used, so the
same script times an older checkout: ``PYTHONPATH=/path/to/old/src python ...``.

Usage: ``.venv/bin/python benchmarks/store_queries.py [--hours 24] [--databases sqlite]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from suite.databases import fresh_store

from mqtthub.pipeline import RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store import queries
from mqtthub.store.database import Store

START = 1_790_000_000.0 - 1_790_000_000.0 % 3600
DEVICE = "q1"


def sensor(i: int) -> dict[str, float]:
    """The 7 values of the throughput suite's sensor message, varying with ``i``."""
    return {
        "temperature": 18 + (i % 1200) / 100,
        "humidity": 30 + (i % 400) / 10,
        "pressure": 990 + (i % 40),
        "light": i % 1000,
        "rssi": -40 - i % 50,
        "voltage": 3.0 + (i % 40) / 100,
        "uptime": 86400 + i,
    }


def messages(hours: int) -> Iterator[RawMessage]:
    """The fill, in time order."""
    for i in range(hours * 3600):
        at = START + i
        yield RawMessage(f"devices/{DEVICE}/sensor", orjson.dumps(sensor(i)), 1, False, at)
        if i % 300 == 0:
            body = orjson.dumps({"battery": 100 - i / 3600})
            yield RawMessage(f"devices/{DEVICE}/heartbeat", body, 1, False, at)
        if i < 3600 and i % 10 == 0:
            for d in range(1, 100):
                body = orjson.dumps(sensor(i + d))
                yield RawMessage(f"devices/other{d}/sensor", body, 1, False, at + d / 1000)


def fill(store: Store, hours: int) -> None:
    """Write the fill in batches of 2,000 messages."""
    presence = PresenceEngine()
    chunk: list[RawMessage] = []
    for message in messages(hours):
        chunk.append(message)
        if len(chunk) == 2000:
            store.write(
                build_batch(parse_all(chunk, prefix="devices", max_payload=4096), presence=presence)
            )
            chunk = []
    if chunk:
        store.write(
            build_batch(parse_all(chunk, prefix="devices", max_payload=4096), presence=presence)
        )


def cases(hours: int) -> dict[str, Callable[[Any], object]]:
    """Query name -> call on the engine."""
    end = START + hours * 3600
    middle = START + hours * 1800

    def readings(metric: str | None, limit: int, since: float | None = None) -> Any:
        until = None if since is None else since + 3600
        return lambda e: queries.device_readings(
            e, DEVICE, metric=metric, since=since, until=until, limit=limit
        )

    def series(seconds: float) -> Any:
        since = end - seconds
        bucket = max(1.0, seconds / 500)
        return lambda e: queries.device_series(
            e, DEVICE, metric="temperature", since=since, until=end, bucket=bucket
        )

    return {
        "readings, newest 1000": readings(None, 1000),
        "readings, metric, newest 1000": readings("temperature", 1000),
        "readings, rare metric, newest 100": readings("battery", 100),
        "readings, metric, one hour": readings("temperature", 5000, middle),
        "series, 1 h (raw, 7.2 s buckets)": series(3600),
        "series, 8 h (raw, 57.6 s buckets)": series(8 * 3600 - 1),
        "series, 24 h (per-minute aggregates)": series(24 * 3600),
        "device detail with latest": lambda e: queries.get_device(e, DEVICE),
        "device list with latest (100)": lambda e: queries.list_devices(
            e, limit=100, with_latest=True
        ),
    }


def main() -> None:
    """Fill, time, print one JSON object per database: query -> milliseconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    for dialect in args.databases.split(","):
        with fresh_store(dialect) as store:
            fill(store, args.hours)
            if dialect == "postgresql":  # as autovacuum does on a live database
                with store.engine.begin() as connection:
                    connection.exec_driver_sql("ANALYZE")
            timings = {}
            for name, call in cases(args.hours).items():
                call(store.engine)
                runs = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    call(store.engine)
                    runs.append(time.perf_counter() - started)
                timings[name] = round(statistics.median(runs) * 1000, 2)
        print(json.dumps({"database": dialect, **timings}))


if __name__ == "__main__":
    main()
