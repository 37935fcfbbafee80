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
from suite.procs import MOSQUITTO, nofile_limit

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
    mosquitto = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, check=False)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024**2, 1),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "mqtthub": importlib.metadata.version("mqtthub"),
        "mosquitto": (mosquitto.stdout or mosquitto.stderr).splitlines()[0].split()[-1],
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


def _level(results: dict[str, Any], load: float) -> dict[str, Any] | None:
    for level in _get(results, "latency", "levels") or []:
        if abs(level["load"] - load) < 1e-9:
            return dict(level)
    return None


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The project's stated targets next to this run's figures."""
    stored = results.get("stored_rate") or {}
    half = _level(results, 0.5)
    rows = [
        ("stored/broker, QoS 1, SQLite", ">= 0.8", _get(stored, "sqlite", "qos1", "ratio"), 0.8),
        (
            "stored/broker, QoS 1, PostgreSQL",
            ">= 0.6",
            _get(stored, "postgresql", "qos1", "ratio"),
            0.6,
        ),
        (
            "stored msg/s, QoS 1, SQLite",
            ">= 30000",
            _get(stored, "sqlite", "qos1", "median"),
            30000,
        ),
    ]
    targets = [
        {
            "name": name,
            "target": text,
            "measured": value,
            "met": None if value is None else value >= bound,
        }
        for name, text, value, bound in rows
    ]
    p99 = None if half is None else half["p99_ms"]
    targets.append(
        {
            "name": "p99 publish-to-stored at 50% load (ms)",
            "target": "< 50",
            "measured": p99,
            "met": None if p99 is None else p99 < 50,
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
                f"| {_fmt(run.get('ratio'), 2)} |"
            )
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The run as Markdown: throughput, latency, presence, memory, targets."""
    lines = ["| figure | QoS | msg/s (median) | ratio to broker |", "|---|---|---|---|"]
    lines += _rate_rows(results)
    lines += ["", "| load | target msg/s | achieved msg/s | p50 ms | p99 ms | max ms |"]
    lines.append("|---|---|---|---|---|---|")
    for level in _get(results, "latency", "levels") or []:
        cells = [f"{level['load']:.0%}", _fmt(level["target_rate"]), _fmt(level["achieved_rate"])]
        cells += [_fmt(level[key], 1) for key in ("p50_ms", "p99_ms", "max_ms")]
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
    lines += ["", "| target | stated | measured | met |", "|---|---|---|---|"]
    for target in results.get("targets", []):
        measured = target["measured"]
        shown = (
            "n/a"
            if measured is None
            else f"{measured:,.2f}"
            if measured < 100
            else f"{measured:,.0f}"
        )
        met = {True: "yes", False: "**no**", None: "n/a"}[target["met"]]
        lines.append(f"| {target['name']} | {target['target']} | {shown} | {met} |")
    return "\n".join(lines) + "\n"
