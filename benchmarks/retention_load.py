"""Ingest rate with the retention task deleting old data, against the same without it.

Builds one SQLite database holding ``--old`` samples from 40 days ago (100 devices, 7
values each, with their per-minute rows, rolled up to hours and days), then, in rounds
that alternate, starts ``mqtthub serve`` on a fresh copy of it and stores a burst of
``--messages`` messages (quick_ingest's publisher and timing):

* ``without``: ``MQTTHUB_RETENTION_INTERVAL=0`` (no retention task);
* ``with``: raw retention 30 d and per-minute 35 d, so the task deletes the old samples
  and per-minute rows in steps all through the burst.

Prints each round's stored rates, their medians and the ratio with/without, and how many
old samples the task had deleted when each burst was stored.

Usage: ``.venv/bin/python benchmarks/retention_load.py --messages 50000 --rounds 3``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))

from quick_ingest import free_port, listening, stored_rate, wait_for  # noqa: E402

from mqtthub.housekeeping import Housekeeping  # noqa: E402
from mqtthub.pipeline import RawMessage, build_batch, parse_all  # noqa: E402
from mqtthub.presence import PresenceEngine  # noqa: E402
from mqtthub.retention import DAY, RetentionPolicy  # noqa: E402
from mqtthub.store.database import Store  # noqa: E402

NOW_OFFSET = 40 * DAY  # the old data's age


def preload(path: Path, old: int, now: float) -> None:
    """``old`` samples 40 days back, one a second per device over 100 devices, rolled up."""
    store = Store.open(f"sqlite:///{path}")
    presence = PresenceEngine()
    start = now - NOW_OFFSET
    values = '"temperature":21.5,"humidity":40.2,"pressure":1012.8,"light":300,"rssi":-61,'
    values += '"voltage":3.29,"uptime":86400'
    for first in range(0, old, 5000):
        raw = [
            RawMessage(
                f"bench/old-{i % 100}/sensor",
                f'{{"ts":{start + i // 100},{values}}}'.encode(),
                1,
                False,
                start + i // 100,
            )
            for i in range(first, min(old, first + 5000))
        ]
        store.write(
            build_batch(parse_all(raw, prefix="bench", max_payload=65536), presence=presence)
        )

    async def execute_write(operation: Any, *args: Any, **kwargs: Any) -> Any:
        return store.read(operation, *args, **kwargs)

    rollups = Housekeeping(
        execute_write=execute_write,
        policy=RetentionPolicy(raw=None, minute=None),
        pause_factor=0,
        min_pause=0,
        batch_rows=50_000,
    )
    asyncio.run(rollups.run_pass())
    store.close()


def old_samples(path: Path) -> int:
    """How many preloaded samples are left."""
    store = Store.open(f"sqlite:///{path}")
    try:
        with store.engine.connect() as connection:
            query = text("SELECT count(*) FROM samples WHERE device_id LIKE 'old-%'")
            return int(connection.execute(query).scalar_one())
    finally:
        store.close()


def main() -> None:
    """Alternate rounds without and with retention; print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--old", type=int, default=300_000, help="old samples to delete")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"without": [], "with": []}
    deleted: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        template = workdir / "template.db"
        preload(template, args.old, time.time())
        port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
            "max_inflight_messages 0\nuser root\n"
        )
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: listening(port), 10, "mosquitto to start")
            for _ in range(args.rounds):
                for mode in ("without", "with"):
                    database = workdir / f"{mode}.db"
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{database}{suffix}").unlink(missing_ok=True)
                    shutil.copy(template, database)
                    env = {"MQTTHUB_DATABASE_URL": f"sqlite:///{database}"}
                    if mode == "without":
                        env["MQTTHUB_RETENTION_INTERVAL"] = "0"
                    else:
                        env |= {"MQTTHUB_RETENTION_RAW": "30d", "MQTTHUB_RETENTION_1M": "35d"}
                    rates[mode].append(stored_rate(port, args.messages, args.qos, workdir, env))
                    if mode == "with":
                        deleted.append(args.old - old_samples(database))
        finally:
            broker.terminate()
            broker.wait(10)
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    result = {
        "messages": args.messages,
        "old_samples": args.old,
        "qos": args.qos,
        "rounds": {mode: [round(r) for r in values] for mode, values in rates.items()},
        "median_without": round(medians["without"]),
        "median_with": round(medians["with"]),
        "ratio": round(medians["with"] / medians["without"], 3),
        "old_samples_deleted_by_end_of_burst": deleted,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
