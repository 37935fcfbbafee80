"""Scale-out: the stored rate of ``serve`` with 1, 2, 3 ... workers on PostgreSQL, and
where the CPU goes.

Each round measures the broker baseline (a bare ``mosquitto_sub``, QoS 1,
:func:`throughput.broker_rate`) and then, for every worker count, a fresh PostgreSQL
database and ``serve`` in the share group ``bench`` (one worker: a plain ``serve`` with
``MQTTHUB_SHARE_GROUP``, so it pays the same shared subscription and leader lock as the
others; more: ``MQTTHUB_WORKERS=N``) storing the same QoS 1 burst
(:mod:`publishers` ``burst``). The rate runs from serve's receipt of the first message
(the earliest reading's time) to the first poll that shows every message stored.

Progress is read from the database, not from ``/api/stats``: the other workers store their
counters only every 2 s, which would blur the end of a burst. The poll sums
``readings_1m.count`` of one metric (a few hundred rows, written in the same transaction as
the samples) every 0.1 s; ``samples`` is counted once at the end to check that every
message was stored exactly once.

CPU is sampled from ``/proc`` at every poll, per process, from just before the publisher
starts to the end of the burst: each worker, the pool process that starts them, the
broker, the publisher (its whole life, encoding the burst included), and the PostgreSQL
server's processes, split into the backends of this run's database (the workers'
connections; the poll's own backend left out) and the server's background processes (WAL
writer, checkpointer, ...). Backends of other databases are not counted. A process that
ends inside the window keeps the CPU it had at the last poll. ``cpu_cores`` divides each
group's CPU seconds by the rate's window (first receipt to all stored), so it reads as
"cores busy while the burst was stored"; ``cpu_ms_per_message`` is every process but the
publisher, per stored message.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from suite import publishers
from suite.databases import Database, provision
from suite.procs import TOPIC_PREFIX, Broker, Serve, log, stop_process, wait_until
from suite.throughput import STALL_S, broker_rate

GROUP = "bench"
SHARED_TOPIC = f"$share/{GROUP}/{TOPIC_PREFIX}/+/+"
POLL_S = 0.1
WORKER_REFRESH_S = 2.0  # how often a worker stores its counters for /api/stats
METRIC = "temperature"  # every burst message carries it exactly once
_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[float, float] | None:
    """(CPU seconds user + system, start time in seconds since boot) of ``pid``, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS, int(fields[19]) / _TICKS


def _uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


class ProcessCpu:
    """CPU seconds of named groups of processes over a window, sampled at every poll.

    ``groups`` maps a name to a function that lists the group's pids now. A pid that
    started before the window counts from its CPU when first seen in it; one that started
    inside the window counts from zero; one that ended keeps its CPU of the last sample.
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._started_at = 0.0
        self._boot_offset = 0.0  # uptime at the window's start
        self.seconds = 0.0

    def start(self) -> None:
        """Open the window and take the first sample."""
        self._started_at, self._boot_offset = time.monotonic(), _uptime()
        self._first.clear()
        self._last.clear()
        self.sample()

    def sample(self) -> None:
        """Read every group's processes once."""
        if not self._started_at:
            return
        for name, pids in self.groups.items():
            for pid in pids():
                stat = _stat(pid)
                if stat is None:
                    continue
                cpu, started = stat
                key = (name, pid)
                if key not in self._first:
                    self._first[key] = 0.0 if started >= self._boot_offset else cpu
                self._last[key] = cpu

    def stop(self) -> dict[str, float]:
        """CPU seconds each group used in the window."""
        self.sample()
        self.seconds = max(time.monotonic() - self._started_at, 1e-9)
        used = {name: 0.0 for name in self.groups}
        for (name, pid), last in self._last.items():
            used[name] += last - self._first[(name, pid)]
        return used

    def per_process(self, name: str) -> dict[int, float]:
        """CPU seconds each process of group ``name`` used in the window."""
        return {
            pid: last - self._first[(group, pid)]
            for (group, pid), last in self._last.items()
            if group == name
        }


class _Postgres:
    """The poll's own connection: progress, and which server processes belong to the run."""

    def __init__(self, database: Database) -> None:
        assert database.pg_url is not None
        self.name = database.pg_url.rsplit("/", 1)[1]
        self.connection = psycopg.connect(database.pg_url, autocommit=True)
        row = self.connection.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        self.own = int(row[0])
        self.postmaster = _parent(self.own)
        self._backends: list[int] = []
        self._background: list[int] = []

    def refresh(self) -> None:
        """Which server processes are this run's backends and which are background ones."""
        rows = self.connection.execute(
            "SELECT pid, datname, backend_type FROM pg_stat_activity"
        ).fetchall()
        self._backends = [
            pid for pid, datname, _type in rows if datname == self.name and pid != self.own
        ]
        self._background = [
            pid for pid, datname, kind in rows if datname is None and kind != "client backend"
        ]

    def backends(self) -> list[int]:
        return self._backends

    def background(self) -> list[int]:
        return self._background

    def stored(self) -> int:
        """Messages stored so far: the per-minute count of one metric, summed."""
        row = self.connection.execute(
            "SELECT coalesce(sum(count), 0) FROM readings_1m WHERE metric = %s", (METRIC,)
        ).fetchone()
        return int(row[0]) if row else 0

    def scalar(self, query: str) -> Any:
        row = self.connection.execute(query).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.connection.close()


def _unreaped(proc: subprocess.Popen[Any]) -> list[int]:
    """``proc``'s pid until it is reaped (a zombie still shows its CPU times)."""
    return [proc.pid] if proc.returncode is None else []


def _exited(proc: subprocess.Popen[Any]) -> bool:
    """Whether ``proc`` ended, without reaping it."""
    if proc.returncode is not None:
        return True
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    return os.waitid(os.P_PID, proc.pid, flags) is not None


def _start_workers(serve: Serve, broker: Broker, workers: int) -> list[dict[str, Any]]:
    """Start serve with ``workers`` workers; return once each one is subscribed and listed."""
    serve.start()
    base = f"bench-serve-{serve.http_port}"  # the client id Serve gives serve
    ids = [base] if workers == 1 else [f"{base}-w{i}" for i in range(workers)]
    for client_id in ids:
        broker.wait_for_subscription(client_id, SHARED_TOPIC, timeout=60)
    listed: list[dict[str, Any]] = []

    def all_listed() -> bool:
        nonlocal listed
        listed = list(serve.stats().get("workers") or [])
        return sorted(w["id"] for w in listed) == sorted(ids) and all(w["pid"] for w in listed)

    wait_until(all_listed, 30, f"{workers} workers in /api/stats", 0.25)
    return listed


def stored_rate_workers(
    broker: Broker, count: int, workers: int, workdir: Path, tag: str
) -> dict[str, Any]:
    """One QoS 1 burst of ``count`` into serve with ``workers`` workers on a fresh database."""
    with provision("postgresql", workdir) as database:
        env = {"MQTTHUB_SHARE_GROUP": GROUP}
        if workers > 1:
            env["MQTTHUB_WORKERS"] = str(workers)
        serve = Serve(broker, workdir, database.url, extra_env=env)
        publisher: subprocess.Popen[str] | None = None
        postgres = None
        try:
            listed = _start_workers(serve, broker, workers)
            worker_pids = {w["id"]: int(w["pid"]) for w in listed}
            postgres = _Postgres(database)
            postgres.refresh()
            launched: list[subprocess.Popen[str]] = []
            cpu = ProcessCpu(
                {
                    "workers": lambda: list(worker_pids.values()),
                    "pool": lambda: [serve.pid] if workers > 1 else [],
                    "broker": lambda: [broker.pid],
                    "publisher": lambda: [p for proc in launched for p in _unreaped(proc)],
                    "postgresql_backends": postgres.backends,
                    "postgresql_background": postgres.background,
                }
            )
            cpu.start()
            publisher = publishers.launch("burst", broker.port, 1, count, f"pub-{tag}")
            launched.append(publisher)
            final_at = _poll_until_stored(postgres, serve, count, cpu, publisher)
            used = cpu.stop()
            per_worker = cpu.per_process("workers")
            publisher.wait(60)
            first = database.first_received()
            samples = int(postgres.scalar("SELECT count(*) FROM samples"))
            stats = _counted(serve, count)
            split = {w["id"]: int(w["messages_stored"]) for w in stats.get("workers") or []}
        finally:
            if postgres is not None:
                postgres.close()
            stop_process(publisher)
            serve.stop()
    if first is None:
        raise RuntimeError("no reading stored")
    seconds = final_at - first
    cores = {name: cpu_s / seconds for name, cpu_s in used.items()}
    total = sum(cores.values())
    return {
        "workers": workers,
        "rate": count / seconds,
        "seconds": seconds,
        "samples": samples,
        # Messages whose sample merged into another one of the same device and receive time
        # (stamped by two workers at the same instant); the counters call them stored.
        "merged_samples": count - samples,
        "stored_by_worker": split,
        "batches": stats["batches"],  # every worker's transactions, summed
        "mean_batch": count / max(1, stats["batches"]),
        "cpu_seconds": used,
        "cpu_cores": cores,
        "cpu_cores_total": total,
        "cpu_cores_by_worker": {
            wid: per_worker.get(pid, 0.0) / seconds for wid, pid in sorted(worker_pids.items())
        },
        # CPU that storing one message cost: every process but the publisher, and the workers.
        "cpu_ms_per_message": (sum(used.values()) - used["publisher"]) / count * 1000,
        "workers_cpu_ms_per_message": used["workers"] / count * 1000,
    }


def _counted(serve: Serve, count: int) -> dict[str, Any]:
    """``/api/stats`` once every worker's counters include the burst (they are stored every
    2 s), or as they are after three refreshes."""
    deadline = time.monotonic() + 3 * WORKER_REFRESH_S
    while True:
        stats: dict[str, Any] = serve.stats()
        if stats["messages_stored"] + stats["dead_letters"] >= count:
            return stats
        if time.monotonic() > deadline:
            return stats
        time.sleep(0.25)


def _poll_until_stored(
    postgres: _Postgres,
    serve: Serve,
    count: int,
    cpu: ProcessCpu,
    publisher: subprocess.Popen[str],
) -> float:
    """Poll every 0.1 s until ``count`` messages are stored; the wall time of that poll.

    Every poll samples the CPU; the publisher is reaped only after the sample that saw it
    exited, so its whole CPU time is counted. When the count stops short but the workers'
    own counters (``/api/stats``) say every message was stored, the end is the last poll
    that saw progress: two messages of one device that two workers stamped with the same
    receive time are one sample (see ``merged_samples`` in the results).
    """
    progress, progressed_at, progressed_wall = -1, time.monotonic(), time.time()
    while True:
        stored = postgres.stored()
        now = time.time()
        postgres.refresh()
        exited = _exited(publisher)
        cpu.sample()
        if exited:
            publisher.poll()
        if stored >= count:
            return now
        if stored != progress:
            progress, progressed_at, progressed_wall = stored, time.monotonic(), now
        elif time.monotonic() - progressed_at > STALL_S:
            state = "running" if publisher.returncode is None else f"exit {publisher.returncode}"
            raise TimeoutError(f"stored {stored} of {count}, stalled (publisher {state})")
        elif time.monotonic() - progressed_at > 3 * WORKER_REFRESH_S:
            stats = serve.stats()
            if stats["messages_stored"] + stats["dead_letters"] >= count:
                return progressed_wall
        time.sleep(POLL_S)


def _summary(runs: list[dict[str, Any]], ratios: list[float]) -> dict[str, Any]:
    def median(key: str) -> float | None:
        values = [run[key] for run in runs]
        return statistics.median(values) if values else None

    cores: dict[str, float] = {}
    for name in runs[0]["cpu_cores"] if runs else ():
        cores[name] = statistics.median(run["cpu_cores"][name] for run in runs)
    return {
        "median": median("rate"),
        "runs": [run["rate"] for run in runs],
        "ratio": statistics.median(ratios) if ratios else None,
        "ratio_runs": ratios,
        "cpu_cores": cores,
        "cpu_ms_per_message": median("cpu_ms_per_message"),
        "workers_cpu_ms_per_message": median("workers_cpu_ms_per_message"),
        "merged_samples": sum(run["merged_samples"] for run in runs),
        "details": runs,
    }


def measure_workers(
    broker: Broker,
    workroot: Path,
    count: int,
    worker_counts: tuple[int, ...],
    repeats: int,
    errors: list[str],
) -> dict[str, Any]:
    """Broker baseline and stored rate with each worker count, ``repeats`` rounds."""
    baseline: list[float] = []
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in worker_counts}
    ratios: dict[int, list[float]] = {n: [] for n in worker_counts}
    for round_ in range(1, repeats + 1):
        try:
            base = broker_rate(broker, count, 1, f"w-r{round_}")
        except (OSError, RuntimeError, TimeoutError) as exc:
            errors.append(f"workers: broker_rate round {round_}: {exc}")
            continue
        baseline.append(base)
        log(f"workers round {round_}: broker {base:,.0f} msg/s")
        for workers in worker_counts:
            tag = f"w{workers}r{round_}"
            try:
                run = stored_rate_workers(broker, count, workers, workroot / f"workers-{tag}", tag)
            except Exception as exc:  # recorded; the suite goes on
                errors.append(f"workers: {workers} workers round {round_}: {exc}")
                continue
            if run["merged_samples"]:
                log(
                    f"workers round {round_}: {run['merged_samples']} of {count} messages "
                    "merged into another sample of their device (same receive time)"
                )
            runs[workers].append(run)
            ratios[workers].append(run["rate"] / base)
            log(
                f"workers round {round_}: {workers} worker(s) stored {run['rate']:,.0f} msg/s, "
                f"{run['cpu_cores_total']:.2f} cores busy"
            )
    return {
        "burst": count,
        "qos": 1,
        "database": "postgresql",
        "nproc": len(os.sched_getaffinity(0)),
        "broker_rate": {
            "median": statistics.median(baseline) if baseline else None,
            "runs": baseline,
        },
        "levels": [
            {"workers": n, **_summary(runs[n], ratios[n])} for n in worker_counts if runs[n]
        ],
    }
