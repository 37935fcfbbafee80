"""What does the DB writer thread spend per message of a burst, step by step, in-process?

Runs the writer thread's work without MQTT, the event loop or threads: the throughput
suite's sensor payloads (7 values, 100 devices, received at 20,000 msg/s) in batches of
``--batch`` messages through ``pipeline.parse_all``, ``pipeline.build_batch`` (one presence
engine across batches) and ``Store.write`` on a fresh SQLite file, and prints the median
µs/message of each step over ``--rounds`` rounds (each round a fresh database), in CPU
time of the process (``time.process_time``), so other load on the machine counts less. Less
noisy than a burst through ``serve``, so two trees can be compared quickly (run it with
``PYTHONPATH=<other tree>/src`` for the other one); the burst through ``serve``
(``benchmarks/quick_ingest.py``, ``benchmarks/run.py``) stays the figure that counts.

``gc`` is the part of the three steps the garbage collector took (``gc.callbacks``), and
``gc_full_per_round`` its full collections per round.

Usage: ``.venv/bin/python benchmarks/writer_path.py [--messages 40000] [--batch 4000]
[--rounds 5] [--heap serve|bare] [--freeze]``
"""

from __future__ import annotations

import argparse
import gc
import importlib
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


class GcMeter:
    """CPU seconds the garbage collector spends, and its full (generation 2) collections."""

    def __init__(self) -> None:
        """Start counting (``gc.callbacks``)."""
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
            return
        self.seconds += time.process_time() - self._started
        self.full += info["generation"] == 2


def one_round(batches: list[list[RawMessage]], meter: GcMeter) -> dict[str, float]:
    """Seconds spent in each step over all batches, on a fresh database."""
    spent = {"parse": 0.0, "build": 0.0, "write": 0.0}
    gc_before, full_before = meter.seconds, meter.full
    presence = PresenceEngine()
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(f"sqlite:///{Path(folder) / 'bench.db'}")
        try:
            for messages in batches:
                started = time.process_time()
                parsed = parse_all(messages, prefix="bench", max_payload=65536)
                parsed_at = time.process_time()
                batch = build_batch(parsed, presence=presence)
                built_at = time.process_time()
                store.write(batch)
                written_at = time.process_time()
                spent["parse"] += parsed_at - started
                spent["build"] += built_at - parsed_at
                spent["write"] += written_at - built_at
        finally:
            store.engine.dispose()
    spent["gc"] = meter.seconds - gc_before
    spent["gc_full"] = meter.full - full_before
    return spent


def main() -> None:
    """Measure and print one JSON object (µs per message, medians over rounds)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--heap",
        choices=("serve", "bare"),
        default="serve",
        help="serve: import what serve imports first (its ~120,000 long-lived objects make "
        "each full garbage collection cost what it costs in serve); bare: only the store",
    )
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() before measuring")
    args = parser.parse_args()
    if args.heap == "serve":
        for module in ("mqtthub.service", "mqtthub.web.app", "mqtthub.cli"):
            importlib.import_module(module)
    batches = raw_batches(args.messages, args.batch)
    if args.freeze:
        gc.freeze()
    meter = GcMeter()
    rounds = [one_round(batches, meter) for _ in range(args.rounds)]
    steps = ("parse", "build", "write", "gc")
    per_message = {
        step: round(statistics.median(r[step] for r in rounds) / args.messages * 1e6, 2)
        for step in steps
    }
    total = statistics.median(sum(r[step] for step in steps[:3]) for r in rounds)
    result = {
        "tree": str(Path(mqtthub.__file__).parents[1]),
        "heap": args.heap,
        "freeze": args.freeze,
        **per_message,
        "total": round(total / args.messages * 1e6, 2),
        "gc_full_per_round": statistics.median(r["gc_full"] for r in rounds),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
