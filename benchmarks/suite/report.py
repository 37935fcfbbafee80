"""Machine facts, the project's targets, and the run's results as a Markdown table."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from suite.databases import postgres_version
from suite.procs import mosquitto_version, nofile_limit

REPO = Path(__file__).resolve().parents[2]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_commit() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: CPUs, memory, load, versions, commit."""
    meminfo = Path("/proc/meminfo").read_text().split()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024**2, 1),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "mqtthub": importlib.metadata.version("mqtthub"),
        "mosquitto": mosquitto_version().split()[-1],
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(),
        "open_files_limit": nofile_limit(),
        "commit": _git_commit(),
    }


def _get(data: Any, *path: Any) -> Any:
    """``data[path[0]][path[1]]...``, or None where a level is missing."""
    for key in path:
        if data is None:
            return None
        data = data[key] if isinstance(data, list) else data.get(key)
    return data


def _fixed_level(results: dict[str, Any], rate: float) -> dict[str, Any] | None:
    for level in _get(results, "latency", "levels") or []:
        if level.get("fixed") and abs(level["target_rate"] - rate) < 1e-6:
            return dict(level)
    return None


#: Issue 11's targets: (figure, unit, higher is better, target, stretch or None, where).
TARGET_RATE = 5_000.0
TARGETS: tuple[tuple[str, str, bool, float, float | None, tuple[Any, ...]], ...] = (
    (
        "stored/broker, QoS 1, SQLite (50k burst)",
        "",
        True,
        0.5,
        0.8,
        ("stored_rate", "sqlite", "qos1", "ratio"),
    ),
    (
        "stored/broker, QoS 1, PostgreSQL",
        "",
        True,
        0.35,
        0.6,
        ("stored_rate", "postgresql", "qos1", "ratio"),
    ),
    (
        "stored/broker, QoS 0, SQLite",
        "",
        True,
        0.3,
        0.5,
        ("stored_rate", "sqlite", "qos0", "ratio"),
    ),
    ("p99 publish-to-stored, 5,000 msg/s, SQLite", "ms", False, 50, 20, ("fixed", "p99_ms")),
    ("p50 publish-to-stored, 5,000 msg/s, SQLite", "ms", False, 10, None, ("fixed", "p50_ms")),
    (
        "RSS growth after warm-up (5 min at 80%)",
        "%",
        False,
        5.0,
        None,
        ("soak", "growth_after_warmup_pct"),
    ),
    ("week-long series query", "ms", False, 15, None, ("series", "series_api_ms")),
)


def _bound(higher: bool, value: float, unit: str) -> str:
    if unit == "%":
        return f"< {value:g} % (flat)"
    return f"{'>=' if higher else '<='} {value:g}{(' ' + unit) if unit else ''}"


def _measured(results: dict[str, Any], where: tuple[Any, ...]) -> Any:
    if where[0] == "fixed":
        return _get(_fixed_level(results, TARGET_RATE), *where[1:])
    if where[0] == "series" and _get(results, "series", "days") != 7:
        return None  # only a week counts (the quick run times a day)
    return _get(results, *where)


def _met(value: Any, higher: bool, bound: float | None, strict: bool) -> bool | None:
    if value is None or bound is None:
        return None
    if strict:
        return bool(value < bound)
    return bool(value >= bound if higher else value <= bound)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 11's targets (and stretch goals) next to this run's figures."""
    targets = []
    for name, unit, higher, target, stretch, where in TARGETS:
        value = _measured(results, where)
        strict = unit == "%"
        targets.append(
            {
                "name": name,
                "unit": unit,
                "target": _bound(higher, target, unit),
                "stretch": None if stretch is None else _bound(higher, stretch, unit),
                "measured": value,
                "met": _met(value, higher, target, strict),
                "stretch_met": _met(value, higher, stretch, strict),
            }
        )
    return targets


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _rate_rows(results: dict[str, Any]) -> list[str]:
    rows = []
    for qos in ("qos0", "qos1"):
        broker = _get(results, "broker_rate", qos)
        rows.append(
            f"| mosquitto_sub (baseline) | {qos[-1]} | {_fmt(_get(broker, 'median'))} | 1.00 |"
        )
        for kind in ("sqlite", "postgresql"):
            run = _get(results, "stored_rate", kind, qos) or {}
            rows.append(
                f"| mqtthub serve, {kind} | {qos[-1]} | {_fmt(run.get('median'))} "
                f"| {_fmt(run.get('ratio'), 3)} |"
            )
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The run as Markdown: throughput, latency, presence, memory, soak, series, targets."""
    lines = ["| figure | QoS | msg/s (median) | ratio to broker |", "|---|---|---|---|"]
    lines += _rate_rows(results)
    lines += [
        "",
        "| load | target msg/s | achieved msg/s | p50 ms | p99 ms | max ms | mean batch "
        "| WAL at the end MiB |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|")
    for level in _get(results, "latency", "levels") or []:
        load = f"{level['load']:.0%}"
        label = f"{level['label']} ({load} of max)" if level.get("fixed") else load
        cells = [label, _fmt(level["target_rate"]), _fmt(level["achieved_rate"])]
        keys = ("p50_ms", "p99_ms", "max_ms", "mean_batch", "wal_end_mib")
        cells += [_fmt(level.get(key), 1) for key in keys]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| device dies by | will reaches serve (broker) | API shows offline (mqtthub) | total |",
    ]
    lines.append("|---|---|---|---|")
    for mode in ("killed", "hung"):
        part = _get(results, "presence", mode)
        if part:
            lines.append(
                f"| {mode} | {part['broker']['median_s']:.2f} s | "
                f"{part['mqtthub']['median_s'] * 1000:.0f} ms | {part['total']['median_s']:.2f} s |"
            )
    lines += [
        "",
        "| devices online | serve RSS MiB | idle RSS MiB | KiB/device | seconds to all online |",
    ]
    lines.append("|---|---|---|---|---|")
    for level in _get(results, "memory", "levels") or []:
        lines.append(
            f"| {level['devices']:,} | {level['rss_mib']:.1f} | {level['idle_rss_mib']:.1f} "
            f"| {level['kib_per_device']:.1f} | {level['seconds_to_all_online']:.1f} |"
        )
    lines += _soak_rows(results) + _series_rows(results) + _workers_rows(results)
    lines += ["", "| figure | target | stretch | measured | met | stretch met |"]
    lines.append("|---|---|---|---|---|---|")
    for target in results.get("targets", []):
        measured = target["measured"]
        shown = format_measured(measured, target["unit"])
        met = {True: "yes", False: "**no**", None: "n/a"}
        cells = [target["name"], target["target"], target["stretch"] or "", shown]
        cells += [
            met[target["met"]],
            "" if target["stretch"] is None else met[target["stretch_met"]],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_measured(value: float | None, unit: str) -> str:
    """A target's figure as shown: ratios with 3 decimals (0.347 is not 0.35), others 1."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" if not unit else f"{value:,.1f} {unit}"


def _soak_rows(results: dict[str, Any]) -> list[str]:
    soak = results.get("soak")
    if not soak:
        return []
    head = (
        "| load | msg/s | seconds | RSS after warm-up | end | max | growth | slope | queue max "
        "| database, WAL at the end |"
    )
    cells = [
        f"{soak['fraction']:.0%}",
        _fmt(soak["achieved_rate"]),
        _fmt(soak["seconds"]),
        f"{soak['rss_after_warmup_mib']:.1f} MiB ({soak['warmup_s']:.0f} s)",
        f"{soak['rss_end_mib']:.1f} MiB",
        f"{soak['rss_max_mib']:.1f} MiB",
        f"{soak['growth_after_warmup_mib']:+.1f} MiB ({soak['growth_after_warmup_pct']:+.1f} %)",
        f"{_fmt(soak['slope_after_warmup_mib_per_min'], 2)} MiB/min",
        _fmt(soak["max_queue_depth"]),
        f"{soak['db_end_mib']:,.0f} MiB, {soak['wal_end_mib']:,.0f} MiB",
    ]
    return ["", head, "|---|---|---|---|---|---|---|---|---|---|", "| " + " | ".join(cells) + " |"]


def _series_rows(results: dict[str, Any]) -> list[str]:
    series = results.get("series")
    if not series:
        return []
    return [
        "",
        "| series range | readings | points | API ms (median) | raw aggregation ms |",
        "|---|---|---|---|---|",
        f"| {series['days']} days | {series['readings']:,} | {series['points']} "
        f"| {series['series_api_ms']:.1f} | {series['raw_aggregation_ms']:.1f} |",
    ]


def _workers_rows(results: dict[str, Any]) -> list[str]:
    """Stored rate with N workers (PostgreSQL, QoS 1) and the cores each process used."""
    section = results.get("workers")
    if not section:
        return []
    base = _get(section, "broker_rate", "median")
    lines = [
        "",
        f"| workers ({section['burst']:,} QoS 1, PostgreSQL) | msg/s (median) | ratio to broker "
        "| cores: workers | broker | PostgreSQL (backends + background) | publisher "
        "| CPU ms/message |",
        "|---|---|---|---|---|---|---|---|",
        f"| mosquitto_sub (baseline) | {_fmt(base)} | 1.00 | | | | | |",
    ]
    for level in section.get("levels") or []:
        cores = level.get("cpu_cores") or {}
        postgres = cores.get("postgresql_backends", 0.0) + cores.get("postgresql_background", 0.0)
        cells = [
            str(level["workers"]),
            _fmt(level.get("median")),
            _fmt(level.get("ratio"), 3),
            _fmt(cores.get("workers", 0.0) + cores.get("pool", 0.0), 2),
            _fmt(cores.get("broker"), 2),
            _fmt(postgres, 2),
            _fmt(cores.get("publisher"), 2),
            _fmt(level.get("cpu_ms_per_message"), 3),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
