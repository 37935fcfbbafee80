"""What do 1,000 alert rules over 10,000 devices cost ingest? (issue 14)

In-process, in CPU time (``time.process_time``): a burst of sensor messages (the suite's
7-value payload) from 10,000 devices in batches of ``--batch``, through what the writer
does per batch (``parse_all``, ``build_batch``, ``Store.write`` on a fresh SQLite file),
against what the alert evaluator then does with each stored batch
(``Evaluator.readings`` and ``dead_letters``). Rules: 600 on single devices, 300 on
labels (every device has a ``site`` label of 10), 100 on all devices, over four metrics,
a tenth of them window averages, a third with ``for_seconds``; most thresholds are never
crossed, every 50th rule's now and then (``alert_changes_per_round``). Prints one JSON
object: µs/message of each, and the ratio (the target: at most 0.10).

Usage: ``.venv/bin/python benchmarks/alerts_cost.py [--messages 40000] [--batch 4000]
[--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

import orjson
from mqtt_clients import sensor_values
from suite.databases import fresh_store

from mqtthub.alerts.rules import Condition, Evaluator, Rule
from mqtthub.pipeline import RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine

DEVICES = 10_000
T0 = 1_790_000_000.0
RATE = 20_000.0
METRICS = ("temperature", "humidity", "rssi", "voltage")


def messages(count: int, seed: int = 7) -> list[RawMessage]:
    """``count`` sensor messages round-robin over ``DEVICES`` devices."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        topic = f"devices/d{i % DEVICES}/sensor"
        payload = orjson.dumps(sensor_values(rng, i))
        out.append(RawMessage(topic, payload, 1, False, T0 + i / RATE))
    return out


def rules(seed: int = 11) -> list[Rule]:
    """1,000 rules: 600 single-device, 300 by label, 100 on all devices."""
    rng = random.Random(seed)
    made = []
    for n in range(1000):
        metric = METRICS[n % len(METRICS)]
        scope: dict[str, object] = {}
        if n < 600:
            scope["device_id"] = f"d{rng.randrange(DEVICES)}"
        elif n < 900:
            scope["labels"] = {"site": f"s{n % 10}"}
        # Most rules watch for what does not happen; every 50th for what sometimes does.
        usual = {"temperature": 35.0, "humidity": 75.0, "rssi": -35.0, "voltage": 3.5}
        rare = {"temperature": 29.8, "humidity": 69.5, "rssi": -41.0, "voltage": 3.39}
        threshold = (rare if n % 50 == 0 else usual)[metric]
        made.append(
            Rule(
                f"r{n}",
                f"rule {n}",
                Condition.ABOVE,
                metric=metric,
                threshold=threshold,
                for_seconds=30.0 if n % 3 == 0 or n % 10 == 1 else 0.0,
                window_average=n % 10 == 1,
                **scope,  # type: ignore[arg-type]
            )
        )
    return made


def main(argv: list[str] | None = None) -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    raw = messages(args.messages)
    batches = [raw[i : i + args.batch] for i in range(0, len(raw), args.batch)]
    labels = {f"d{n}": {"site": f"s{n % 10}"} for n in range(DEVICES)}
    ingest_us, alerts_us, changes_seen = [], [], 0
    for _round in range(args.rounds):
        with fresh_store("sqlite") as store:
            presence = PresenceEngine()
            evaluator = Evaluator(rules(), labels)
            ingest = evaluate = 0.0
            for batch_messages in batches:
                started = time.process_time()
                parsed = parse_all(batch_messages, prefix="devices", max_payload=65536)
                batch = build_batch(parsed, presence=presence)
                store.write(batch)
                middle = time.process_time()
                changes = evaluator.readings(batch.samples)
                changes += evaluator.dead_letters(
                    (d.device_id, d.received_at) for d in batch.dead_letters
                )
                evaluate += time.process_time() - middle
                ingest += middle - started
                changes_seen += len(changes)
        ingest_us.append(ingest / len(raw) * 1e6)
        alerts_us.append(evaluate / len(raw) * 1e6)
    ingest_median, alerts_median = statistics.median(ingest_us), statistics.median(alerts_us)
    print(
        json.dumps(
            {
                "messages": len(raw),
                "batch": args.batch,
                "rounds": args.rounds,
                "rules": 1000,
                "devices": DEVICES,
                "ingest_us_per_message": round(ingest_median, 2),
                "alerts_us_per_message": round(alerts_median, 3),
                "ratio": round(alerts_median / ingest_median, 4),
                "alert_changes_per_round": changes_seen // args.rounds,
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
