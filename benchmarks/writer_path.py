"""What does the DB writer thread spend per message of a burst, step by step, in-process?

Runs the writer thread's work without MQTT, the event loop or threads: the throughput
suite's sensor payloads (7 values, 100 devices, received at 20,000 msg/s) in batches of
``--batch`` messages through ``pipeline.parse_all``, ``pipeline.build_batch`` (one presence
engine across batches) and ``Store.write`` on a fresh SQLite file, and prints the median
µs/message of each step over ``--rounds`` rounds (each round a fresh database). Less
noisy than a burst through ``serve``, so two trees can be compared quickly (run it with
``PYTHONPATH=<other tree>/src`` for the other one); the burst through ``serve``
(``benchmarks/quick_ingest.py``, ``benchmarks/run.py``) stays the figure that counts.

Usage: ``.venv/bin/python benchmarks/writer_path.py [--messages 40000] [--batch 4000]
[--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mqtt_clients import sensor_readings

import mqtthub
from mqtthub.pipeline import RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store.database import Store

T0 = 1_790_000_000.0
RATE = 20_000.0  # messages per second of receive time


def raw_batches(messages: int, size: int) -> list[list[RawMessage]]:
    """The burst as batches of raw messages, as the writer takes them off the queue."""
    raw = [
        RawMessage(topic.decode(), payload, 1, False, T0 + i / RATE)
        for i, (topic, payload) in enumerate(sensor_readings(messages))
    ]
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def one_round(batches: list[list[RawMessage]]) -> dict[str, float]:
    """Seconds spent in each step over all batches, on a fresh database."""
    spent = {"parse": 0.0, "build": 0.0, "write": 0.0}
    presence = PresenceEngine()
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(f"sqlite:///{Path(folder) / 'bench.db'}")
        try:
            for messages in batches:
                started = time.perf_counter()
                parsed = parse_all(messages, prefix="bench", max_payload=65536)
                parsed_at = time.perf_counter()
                batch = build_batch(parsed, presence=presence)
                built_at = time.perf_counter()
                store.write(batch)
                written_at = time.perf_counter()
                spent["parse"] += parsed_at - started
                spent["build"] += built_at - parsed_at
                spent["write"] += written_at - built_at
        finally:
            store.engine.dispose()
    return spent


def main() -> None:
    """Measure and print one JSON object (µs per message, medians over rounds)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    batches = raw_batches(args.messages, args.batch)
    rounds = [one_round(batches) for _ in range(args.rounds)]
    per_message = {
        step: round(statistics.median(r[step] for r in rounds) / args.messages * 1e6, 2)
        for step in ("parse", "build", "write")
    }
    total = round(statistics.median(sum(r.values()) for r in rounds) / args.messages * 1e6, 2)
    print(
        json.dumps(
            {"tree": str(Path(mqtthub.__file__).parents[1]), **per_message, "total": total},
        )
    )


if __name__ == "__main__":
    main()
