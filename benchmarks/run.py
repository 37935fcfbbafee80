"""mqtthub's benchmark suite: one command, every figure, measured in the same run.

Usage::

    .venv/bin/python benchmarks/run.py [--quick] [--out DIR]

Starts its own Mosquitto on a free 127.0.0.1 port and measures, in this order:

1. ``broker_rate``: messages/s a bare ``mosquitto_sub`` receives for a burst;
2. ``stored_rate``: messages/s ``mqtthub serve`` stores for the same burst, QoS 0 and 1,
   SQLite and PostgreSQL, with the ratio to the broker rate of the same round;
3. ``latency``: publish-to-stored p50/p99 at 25/50/90 % of the stored rate just measured
   and at a steady 5,000 msg/s (SQLite, QoS 1);
4. ``soak``: serve's RSS over 5 minutes of a steady QoS 1 load at 80 % of the SQLite
   QoS 1 stored rate just measured, sampled every 5 s;
5. ``presence``: device death (SIGKILL, SIGSTOP) to offline in the API, split into the
   broker's part and mqtthub's;
6. ``memory``: serve's RSS with 1,000 and 10,000 simulated devices online;
7. ``series``: the chart query over a week of 1 Hz readings (``series_query.py``);
8. ``workers``: the QoS 1 stored rate on PostgreSQL with 1, 2 and 3 ``serve`` workers in
   one share group, each process's CPU share (workers, broker, PostgreSQL, publisher) and
   the ratio to the broker baseline of the same round (``suite/workers.py``).

``targets`` puts issue 11's targets next to the figures. Full mode repeats every rate
three times (median) and takes about 11 minutes on 2 cores; ``--quick`` uses tiny numbers
(one load level, a 4 s soak, a day of series) and takes well under a minute. Writes
``results.json``, ``results.md`` and ``results.png`` to ``--out`` (default
``benchmarks/results``), prints progress to stderr and one JSON object (the results) to
stdout. Exit status 0 when every measurement produced its figures, 1 when one failed
(``errors`` says which). ``--only workers`` (repeatable) runs just the named sections.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite.latency import measure_latency
from suite.memory import measure_memory
from suite.plot import plot
from suite.presence import measure_presence
from suite.procs import Broker, log
from suite.report import evaluate_targets, machine_facts, markdown
from suite.series import measure_series
from suite.soak import measure_soak
from suite.throughput import measure_rates
from suite.workers import measure_workers

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Plan:
    """How big each measurement is."""

    burst: int  # messages per throughput burst
    repeats: int  # rounds of every rate measurement
    loads: tuple[float, ...]  # fractions of the max stored rate for the latency runs
    latency_seconds: float  # per load level
    fixed_rates: tuple[float, ...]  # msg/s of the fixed-rate latency levels
    fixed_seconds: float  # per fixed-rate level
    soak_fraction: float  # of the max stored rate (SQLite, QoS 1)
    soak_seconds: float
    soak_interval: float  # seconds between RSS samples
    soak_warmup: float  # seconds before the RSS that growth is measured from
    presence_devices: int  # per way of dying
    fleet_sizes: tuple[int, ...]  # simulated devices for the memory figure
    settle: float  # seconds before each RSS reading
    series_days: int  # of 1 Hz readings behind the chart query
    series_repeat: int
    worker_counts: tuple[int, ...]  # serve workers, one stored rate each (PostgreSQL)
    workers_burst: int  # messages per burst of the workers section


PLANS = {
    "full": Plan(
        burst=50_000,
        repeats=3,
        loads=(0.25, 0.5, 0.9),
        latency_seconds=8.0,
        fixed_rates=(5_000.0,),
        fixed_seconds=20.0,
        soak_fraction=0.8,
        soak_seconds=300.0,
        soak_interval=5.0,
        soak_warmup=60.0,
        presence_devices=3,
        fleet_sizes=(1_000, 10_000),
        settle=2.0,
        series_days=7,
        series_repeat=15,
        worker_counts=(1, 2, 3),
        workers_burst=50_000,
    ),
    "quick": Plan(
        burst=3_000,
        repeats=1,
        loads=(0.5,),
        latency_seconds=1.0,
        fixed_rates=(5_000.0,),
        fixed_seconds=1.0,
        soak_fraction=0.8,
        soak_seconds=4.0,
        soak_interval=0.5,
        soak_warmup=1.5,
        presence_devices=1,
        fleet_sizes=(50, 200),
        settle=0.5,
        series_days=1,
        series_repeat=3,
        worker_counts=(1, 2),
        workers_burst=2_000,
    ),
}


#: The sections ``--only`` chose (None: all of them).
ONLY: set[str] | None = None


def _section(results: dict[str, Any], name: str, run: Callable[[], dict[str, Any]]) -> None:
    """Run one measurement; on failure record the error and go on with the next.

    Dirty pages of the sections before are flushed first (``os.sync``): their writeback
    would otherwise compete with this section for the disk and the CPU.
    """
    if ONLY is not None and name not in ONLY:
        return
    os.sync()
    started = time.monotonic()
    log(f"{name} ...")
    try:
        results.update(run() if name == "rates" else {name: run()})
    except Exception as exc:  # recorded in results["errors"]; the other figures still count
        log(f"{name} failed: {exc!r}\n{traceback.format_exc()}")
        results["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
    results["seconds"][name] = round(time.monotonic() - started, 1)


def run_suite(plan: Plan, workroot: Path, results: dict[str, Any]) -> None:
    """Every measurement against one private broker, in order; fills ``results``."""
    broker = Broker(workroot)
    broker.start()
    try:
        _section(
            results,
            "rates",
            lambda: measure_rates(broker, workroot, plan.burst, plan.repeats, results["errors"]),
        )
        max_rate = (((results.get("stored_rate") or {}).get("sqlite") or {}).get("qos1") or {}).get(
            "median"
        )
        if max_rate:
            _section(
                results,
                "latency",
                lambda: measure_latency(
                    broker,
                    workroot,
                    max_rate,
                    plan.loads,
                    plan.latency_seconds,
                    fixed_rates=plan.fixed_rates,
                    fixed_seconds=plan.fixed_seconds,
                ),
            )
            _section(
                results,
                "soak",
                lambda: measure_soak(
                    broker,
                    workroot,
                    max_rate,
                    fraction=plan.soak_fraction,
                    seconds=plan.soak_seconds,
                    interval=plan.soak_interval,
                    warmup=plan.soak_warmup,
                ),
            )
        elif ONLY is None or ONLY & {"latency", "soak"}:
            results["errors"].append("latency, soak: skipped, no stored rate for SQLite QoS 1")
        _section(
            results, "presence", lambda: measure_presence(broker, workroot, plan.presence_devices)
        )
        _section(
            results,
            "memory",
            lambda: measure_memory(broker, workroot, plan.fleet_sizes, plan.settle),
        )
        _section(
            results,
            "workers",
            lambda: measure_workers(
                broker,
                workroot,
                plan.workers_burst,
                plan.worker_counts,
                plan.repeats,
                results["errors"],
            ),
        )
    finally:
        broker.stop()
    _section(results, "series", lambda: measure_series(plan.series_days, plan.series_repeat))


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """results.json, results.md and results.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    try:
        plot(results, out / "results.png")
    except Exception as exc:  # a broken plot must not hide the figures
        results["errors"].append(f"plot: {type(exc).__name__}: {exc}")
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny numbers, well under a minute")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument(
        "--only",
        action="append",
        choices=("rates", "latency", "soak", "presence", "memory", "workers", "series"),
        help="run only this section (repeatable; latency and soak need rates)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the suite, write the outputs, print the results; 0 when nothing failed."""
    global ONLY
    args = parse_args(argv)
    ONLY = set(args.only) if args.only else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so every child gets stopped
    mode = "quick" if args.quick else "full"
    plan = PLANS[mode]
    started = time.monotonic()
    results: dict[str, Any] = {
        "mode": mode,
        "only": sorted(ONLY) if ONLY else None,
        "plan": asdict(plan),
        "machine": machine_facts(),
        "errors": [],
        "seconds": {},
    }
    workroot = Path(tempfile.mkdtemp(prefix="mqtthub-bench-"))
    try:
        run_suite(plan, workroot, results)
    finally:
        if args.keep:
            log(f"work folder kept: {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)
    results["targets"] = evaluate_targets(results)
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    results["ok"] = not results["errors"]
    write_outputs(results, args.out)
    log(f"done in {results['elapsed_seconds']} s; wrote {args.out}/results.{{json,md,png}}")
    print(json.dumps(results), flush=True)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
