"""Burst throughput: what a bare ``mosquitto_sub`` receives, and what ``serve`` stores.

Both see the same burst from the same publisher process (``mqtt_clients.run_publisher``,
``COUNT`` sensor readings over 100 device ids, as fast as the socket takes them), and
both are timed from the first message they received to the last one received (the
baseline) or stored (serve). Rounds are interleaved (broker, SQLite, PostgreSQL at QoS 0,
then at QoS 1) so that drift on a shared machine hits every figure alike, and each
stored/broker ratio is taken against the broker run of the same round.
"""

from __future__ import annotations

import os
import select
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite import publishers
from suite.databases import provision
from suite.procs import HOST, TOPIC_PREFIX, Broker, CpuMeter, Serve, log, stop_process

TOPIC = f"{TOPIC_PREFIX}/+/sensor"
POLL_S = 0.1  # /api/stats is polled no faster than this
STALL_S = 30.0  # no progress for this long: the run failed
KINDS = ("sqlite", "postgresql")


def _read_lines(proc: subprocess.Popen[bytes], expected: int) -> tuple[int, int, float, float]:
    """Count lines on ``proc``'s stdout: (count, count in first chunk, first time, last time)."""
    assert proc.stdout is not None
    fd, count, first_chunk, first, last = proc.stdout.fileno(), 0, 0, 0.0, 0.0
    while count < expected:
        readable, _, _ = select.select([fd], [], [], STALL_S)
        if not readable:
            break
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        last = time.perf_counter()
        if not count:
            first, first_chunk = last, chunk.count(b"\n")
        count += chunk.count(b"\n")
    return count, first_chunk, first, last


def broker_rate(broker: Broker, count: int, qos: int, tag: str) -> float:
    """Messages/s a bare ``mosquitto_sub`` receives, first message to last."""
    client_id = f"bench-sub-{tag}"
    command = ["mosquitto_sub", "-h", HOST, "-p", str(broker.port), "-i", client_id]
    command += ["-t", TOPIC, "-q", str(qos), "-C", str(count)]
    sub = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    publisher = None
    try:
        broker.wait_for_subscription(client_id, TOPIC)
        publisher = publishers.launch("burst", broker.port, qos, count, f"bench-pub-{tag}")
        received, first_chunk, first, last = _read_lines(sub, count)
        publisher.wait(60)
    finally:
        stop_process(publisher)
        stop_process(sub)
    if received < count:
        raise RuntimeError(f"mosquitto_sub received {received} of {count}")
    return (received - first_chunk) / (last - first)


def _wait_stored(
    serve: Serve, count: int, publisher: subprocess.Popen[str], cpu: CpuMeter
) -> dict[str, Any]:
    """Poll /api/stats every 0.1 s until ``count`` messages are stored (or dead-lettered).

    ``cpu`` is started at the first poll that shows a message received.
    """
    progress, progressed_at, measuring = -1, time.monotonic(), False
    while True:
        stats = serve.stats()
        now = time.time()
        if not measuring and stats["messages_received"]:
            cpu.start()
            measuring = True
        done = stats["messages_stored"] + stats["dead_letters"]
        if done >= count:
            return {**stats, "seen_at": now, "cpu": cpu.stop()}
        if done != progress:
            progress, progressed_at = done, time.monotonic()
        elif time.monotonic() - progressed_at > STALL_S:
            state = "running" if publisher.poll() is None else f"exit {publisher.returncode}"
            raise TimeoutError(f"stored {done} of {count}, stalled (publisher {state})")
        time.sleep(POLL_S)


def stored_rate(broker: Broker, count: int, qos: int, kind: str, workdir: Path) -> dict[str, Any]:
    """Messages/s serve stores on ``kind``: serve's receipt of the first to the last commit.

    The start is the earliest reading's time (serve's own receive time: the burst has no
    ``ts``); the end is the first /api/stats poll that shows every message stored, so the
    rate errs low by at most one poll interval.
    """
    with provision(kind, workdir) as database:
        serve, publisher = Serve(broker, workdir, database.url), None
        try:
            serve.start()
            publisher = publishers.launch("burst", broker.port, qos, count, f"pub-{workdir.name}")
            cpu = CpuMeter(serve.pid, broker.pid)
            final = _wait_stored(serve, count, publisher, cpu)
            publisher.wait(60)
            first = database.first_received()
        finally:
            stop_process(publisher)
            serve.stop()
    if first is None:
        raise RuntimeError("no reading stored")
    seconds = final["seen_at"] - first
    batches = max(1, final["batches"])
    return {
        "rate": final["messages_stored"] / seconds,
        "seconds": seconds,
        "stored": final["messages_stored"],
        "dead_letters": final["dead_letters"],
        "mean_batch": final["messages_stored"] / batches,
        "cpu_cores": final["cpu"],
    }


@dataclass
class Series:
    """Repeated runs of one figure: the rates, and per-run ratios to the round's baseline."""

    runs: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Median rate and median ratio (None when no run succeeded), plus every run."""
        median = statistics.median(self.runs) if self.runs else None
        ratio = statistics.median(self.ratios) if self.ratios else None
        result: dict[str, Any] = {"median": median, "runs": self.runs}
        if self.ratios or self.details:
            result |= {"ratio": ratio, "ratio_runs": self.ratios, "details": self.details}
        return result


def measure_rates(
    broker: Broker, workroot: Path, count: int, repeats: int, errors: list[str]
) -> dict[str, Any]:
    """Broker and stored rates at QoS 0 and 1 on both databases, ``repeats`` rounds."""
    baseline = {qos: Series() for qos in (0, 1)}
    stored = {(kind, qos): Series() for kind in KINDS for qos in (0, 1)}
    for round_ in range(1, repeats + 1):
        for qos in (0, 1):
            try:
                base = broker_rate(broker, count, qos, f"r{round_}q{qos}")
            except (OSError, RuntimeError, TimeoutError) as exc:
                errors.append(f"broker_rate qos {qos} round {round_}: {exc}")
                continue
            baseline[qos].runs.append(base)
            log(f"round {round_} qos {qos}: broker {base:,.0f} msg/s")
            for kind in KINDS:
                workdir = workroot / f"rate-{kind}-q{qos}-r{round_}"
                try:
                    run = stored_rate(broker, count, qos, kind, workdir)
                except Exception as exc:  # recorded; the suite goes on
                    errors.append(f"stored_rate {kind} qos {qos} round {round_}: {exc}")
                    continue
                series = stored[kind, qos]
                series.runs.append(run["rate"])
                series.ratios.append(run["rate"] / base)
                series.details.append(run)
                log(f"round {round_} qos {qos}: {kind} stored {run['rate']:,.0f} msg/s")
    return {
        "broker_rate": {f"qos{q}": s.summary() for q, s in baseline.items()},
        "stored_rate": {
            kind: {f"qos{q}": stored[kind, q].summary() for q in (0, 1)} for kind in KINDS
        },
    }
