"""``results.png``: the figures of one run on one page (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from suite.report import format_measured

COLORS = {"broker": "#9e9e9e", "sqlite": "#1f77b4", "postgresql": "#ff7f0e"}
#: Issue 11's stored/broker targets per (database, QoS), drawn as red ticks on the bars.
RATIO_TARGETS = {("sqlite", "qos1"): 0.5, ("postgresql", "qos1"): 0.35, ("sqlite", "qos0"): 0.3}


def _throughput(ax: Axes, results: dict[str, Any]) -> None:
    """Grouped bars: broker, SQLite, PostgreSQL at QoS 0 and 1, ratios on the bars."""
    width = 0.27
    for q, qos in enumerate(("qos0", "qos1")):
        baseline = ((results.get("broker_rate") or {}).get(qos) or {}).get("median") or 0
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
            text = f"{value / 1000:.1f}k" + ("" if ratio is None else f"\n{ratio:.3f}x")
            ax.text(x, value / 1000, text, ha="center", va="bottom", fontsize=8)
            target = RATIO_TARGETS.get((name, qos))
            if target and baseline:
                y = target * baseline / 1000
                ax.hlines(y, x - width / 2, x + width / 2, color="red", linewidth=2)
    ax.set_xticks([0, 1], ["QoS 0", "QoS 1"])
    ax.set_ylabel("thousand messages/s (median)")
    ax.set_title("Burst throughput (k msg/s; stored / broker; red: target ratio)")
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
    ax.axhline(50, color="red", linestyle="--", linewidth=1, label="target p99 <= 50 ms at 5,000/s")
    ax.axhline(10, color="red", linestyle=":", linewidth=1, label="target p50 <= 10 ms at 5,000/s")
    labels = [
        f"{level.get('label') or format(level['load'], '.0%')}\n{level['achieved_rate']:,.0f}/s"
        for level in levels
    ]
    ax.set_xticks(list(xs), labels)
    if levels and max(level["p99_ms"] for level in levels) > 200:
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


def _soak(ax: Axes, results: dict[str, Any]) -> None:
    """serve's (and the broker's) RSS over the steady load, the warm-up as a line."""
    soak = results.get("soak") or {}
    samples = soak.get("samples") or []
    ts = [sample["t_s"] for sample in samples]
    ax.plot(ts, [s["rss_mib"] for s in samples], color="#9467bd", label="serve VmRSS")
    ax.plot(ts, [s["broker_rss_mib"] for s in samples], color=COLORS["broker"], label="broker")
    if soak:
        ax.axvline(soak["warmup_s"], color="black", linestyle=":", linewidth=1, label="warm-up")
        ax.set_title(
            f"RSS under {soak['fraction']:.0%} load ({soak['achieved_rate']:,.0f} msg/s, QoS 1, "
            f"SQLite): {soak['growth_after_warmup_mib']:+.1f} MiB after warm-up",
            fontsize=9,
        )
    ax.set_ylim(0, max([s["rss_mib"] for s in samples] + [1]) * 1.25)
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS, MiB")
    ax.legend(fontsize=7, loc="upper left")
    disk = ax.twinx()
    disk.plot(ts, [s.get("wal_mib", 0) for s in samples], color="#8c564b", linestyle="--")
    disk.plot(ts, [s.get("db_mib", 0) for s in samples], color="#8c564b", linestyle=":")
    disk.set_ylabel("MiB on disk: WAL (dashed), database (dotted)", color="#8c564b", fontsize=8)


def _targets(ax: Axes, results: dict[str, Any]) -> None:
    """Issue 11's targets as a table: target, stretch, measured, met."""
    ax.axis("off")
    met = {True: "yes", False: "NO", None: "n/a"}
    rows = []
    for target in results.get("targets") or []:
        shown = format_measured(target["measured"], target["unit"])
        stretch = target["stretch"] or ""
        rows.append([target["name"], target["target"], stretch, shown, met[target["met"]]])
    if not rows:
        return
    table = ax.table(
        cellText=rows,
        colLabels=["figure (issue 11)", "target", "stretch", "measured", "met"],
        loc="center",
        cellLoc="left",
        colWidths=[0.5, 0.14, 0.12, 0.17, 0.07],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.scale(1, 1.6)
    ax.set_title("Targets")


def plot(results: dict[str, Any], path: Path) -> None:
    """Draw the six panels and save them to ``path`` (PNG or SVG by its suffix)."""
    figure, axes = plt.subplots(2, 3, figsize=(19, 9.5))
    _throughput(axes[0][0], results)
    _latency(axes[0][1], results)
    _soak(axes[0][2], results)
    _presence(axes[1][0], results)
    _memory(axes[1][1], results)
    _targets(axes[1][2], results)
    machine = results.get("machine", {})
    figure.suptitle(
        f"mqtthub benchmarks ({results.get('mode')} run, {results.get('finished_at', '')}): "
        f"{machine.get('nproc')} x {machine.get('cpu_model')}, Python {machine.get('python')}, "
        f"Mosquitto {machine.get('mosquitto')}, SQLite {machine.get('sqlite')}, "
        f"PostgreSQL {machine.get('postgresql')}",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    figure.savefig(path, dpi=100)
    plt.close(figure)
