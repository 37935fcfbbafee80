"""``results.png``: the four figures of one run on one page (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

COLORS = {"broker": "#9e9e9e", "sqlite": "#1f77b4", "postgresql": "#ff7f0e"}


def _throughput(ax: Axes, results: dict[str, Any]) -> None:
    """Grouped bars: broker, SQLite, PostgreSQL at QoS 0 and 1, ratios on the bars."""
    width = 0.27
    for q, qos in enumerate(("qos0", "qos1")):
        bars = [("broker", (results.get("broker_rate") or {}).get(qos) or {})]
        bars += [
            (k, ((results.get("stored_rate") or {}).get(k) or {}).get(qos) or {})
            for k in ("sqlite", "postgresql")
        ]
        for b, (name, run) in enumerate(bars):
            value = run.get("median") or 0
            x = q + (b - 1) * width
            label = {"broker": "mosquitto_sub (baseline)", "sqlite": "serve, SQLite"}.get(
                name, "serve, PostgreSQL"
            )
            ax.bar(x, value / 1000, width, color=COLORS[name], label=label if q == 0 else None)
            ratio = run.get("ratio")
            text = f"{value / 1000:.1f}k" + ("" if ratio is None else f"\n{ratio:.2f}x")
            ax.text(x, value / 1000, text, ha="center", va="bottom", fontsize=8)
    ax.axhline(30, color="red", linestyle="--", linewidth=1)
    ax.text(
        1.45, 30, "target 30k (SQLite, QoS 1)", color="red", fontsize=7, ha="right", va="bottom"
    )
    ax.set_xticks([0, 1], ["QoS 0", "QoS 1"])
    ax.set_ylabel("thousand messages/s (median)")
    ax.set_title("Burst throughput (k msg/s; stored / broker ratio)")
    ax.legend(fontsize=7, loc="upper right")


def _latency(ax: Axes, results: dict[str, Any]) -> None:
    """p50 and p99 bars per load level, the 50 ms target as a line."""
    levels = (results.get("latency") or {}).get("levels") or []
    xs = range(len(levels))
    for offset, key, color in ((-0.2, "p50_ms", "#2ca02c"), (0.2, "p99_ms", "#d62728")):
        values = [level[key] for level in levels]
        ax.bar([x + offset for x in xs], values, 0.4, color=color, label=key.split("_")[0])
        for x, value in zip(xs, values, strict=True):
            ax.text(x + offset, value, f"{value:.0f}", ha="center", va="bottom", fontsize=8)
    ax.axhline(50, color="red", linestyle="--", linewidth=1, label="target p99 < 50 ms at 50%")
    labels = [f"{level['load']:.0%}\n{level['achieved_rate']:,.0f}/s" for level in levels]
    ax.set_xticks(list(xs), labels)
    if levels and max(level["p99_ms"] for level in levels) > 500:
        ax.set_yscale("log")
    ax.set_ylabel("ms, publish to visible in the database")
    ax.set_title("Latency under paced load (SQLite, QoS 1)")
    ax.legend(fontsize=7)


def _presence(ax: Axes, results: dict[str, Any]) -> None:
    """Log-scale bars per way of dying: the broker's part (will) and mqtthub's part."""
    presence = results.get("presence") or {}
    modes = [mode for mode in ("killed", "hung") if mode in presence]
    parts = (
        ("broker", "broker: death -> will at serve", 0.2),
        ("mqtthub", "mqtthub: will -> API", -0.2),
    )
    for key, label, offset in parts:
        values = [max(presence[mode][key]["median_s"], 1e-4) for mode in modes]
        color = COLORS["broker" if key == "broker" else "sqlite"]
        ys = [y + offset for y in range(len(modes))]
        ax.barh(ys, values, 0.38, color=color, label=label)
        for y, value in zip(ys, values, strict=True):
            text = f" {value:.2f} s" if value >= 1 else f" {value * 1000:.0f} ms"
            ax.text(value, y, text, va="center", fontsize=8)
    names = {"killed": "SIGKILL\n(socket closed)", "hung": "SIGSTOP\n(silent, keepalive 5 s)"}
    ax.set_yticks(range(len(modes)), [names[m] for m in modes])
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 100)
    ax.set_xlabel("seconds (median, log scale)")
    ax.set_title("Presence: device death to offline in the API")
    ax.legend(fontsize=7, loc="lower right")


def _memory(ax: Axes, results: dict[str, Any]) -> None:
    """serve's RSS idle and with each fleet size, KiB per device on the bars."""
    levels = (results.get("memory") or {}).get("levels") or []
    names = ["idle"] + [f"{level['devices']:,} devices" for level in levels]
    values = [levels[0]["idle_rss_mib"] if levels else 0] + [level["rss_mib"] for level in levels]
    ax.bar(range(len(values)), values, color=["#9e9e9e"] + ["#9467bd"] * len(levels))
    for x, level in enumerate(levels, start=1):
        ax.text(
            x,
            level["rss_mib"],
            f"{level['rss_mib']:.0f} MiB\n+{level['kib_per_device']:.1f} KiB/device",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    if levels:
        ax.text(0, values[0], f"{values[0]:.0f} MiB", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(values)), names)
    ax.set_ylim(0, max([*values, 1]) * 1.2)
    ax.set_ylabel("serve VmRSS, MiB")
    ax.set_title("serve memory with connected simulated devices")


def plot(results: dict[str, Any], path: Path) -> None:
    """Draw the four panels and save them to ``path`` (PNG or SVG by its suffix)."""
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    _throughput(axes[0][0], results)
    _latency(axes[0][1], results)
    _presence(axes[1][0], results)
    _memory(axes[1][1], results)
    machine = results.get("machine", {})
    figure.suptitle(
        f"mqtthub benchmarks ({results.get('mode')} run, {results.get('finished_at', '')}): "
        f"{machine.get('nproc')} x {machine.get('cpu_model')}, Python {machine.get('python')}, "
        f"Mosquitto {machine.get('mosquitto')}, SQLite {machine.get('sqlite')}, "
        f"PostgreSQL {machine.get('postgresql')}",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    figure.savefig(path, dpi=110)
    plt.close(figure)
