"""Retention policy and series resolutions: pure functions, no database.

How long each kind of data is kept (raw samples, with per-metric overrides, and the
1-minute, hourly and daily aggregates), parsed from durations such as ``30d``, and which
resolution answers a series query for a given bucket width and range.

A per-metric raw retention works on ``samples`` (one row per device and time, several
metrics in its JSON): a sample is deleted once every metric in it is past its retention;
until then the metrics already past theirs are taken out of its JSON (see
``store/retention.py``). Aggregates keep every metric for their own retention.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mqtthub.messages import METRIC_PATTERN

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
#: Resolutions from the finest to the coarsest, with the width of their rows in seconds.
RESOLUTIONS: tuple[tuple[str, float], ...] = (
    ("raw", 0.0),
    ("1m", MINUTE),
    ("1h", HOUR),
    ("1d", DAY),
)
_UNITS = {"s": 1.0, "m": MINUTE, "h": HOUR, "d": DAY, "w": 7 * DAY, "y": 365 * DAY}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdwy]?)")
FOREVER_WORDS = frozenset({"0", "forever", "never", "inf", "none"})


def parse_duration(text: str) -> float | None:
    """Seconds in ``text`` (``30d``, ``12h``, ``90m``, ``45s``, ``2w``, ``1y``; a bare
    number is seconds), or None for "keep forever" (``0``, ``forever``, ``never``).

    Raises:
        ValueError: not a duration; the message says what is accepted.
    """
    value = text.strip().lower()
    if value in FOREVER_WORDS:
        return None
    match = _DURATION.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: use a number with a unit s, m, h, d, w or y "
            "(e.g. 30d, 12h), or 0/forever to keep everything"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds == 0:
        return None
    if seconds < MINUTE:
        raise ValueError(f"{text!r} is shorter than a minute: keep data at least 1m")
    return seconds


def parse_metric_durations(text: str) -> dict[str, float | None]:
    """``rssi=7d,temperature=90d`` as ``{"rssi": 604800.0, "temperature": 7776000.0}``
    (``forever`` gives None).

    Raises:
        ValueError: a malformed entry, a bad metric name or duration, or a metric twice.
    """
    durations: dict[str, float | None] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        metric, equals, duration = (piece.strip() for piece in entry.partition("="))
        if not equals or not metric:
            raise ValueError(
                f"{entry!r} is not metric=duration: write e.g. rssi=7d,temperature=90d"
            )
        if METRIC_PATTERN.fullmatch(metric) is None:
            raise ValueError(f"{metric!r} is not a metric name ([A-Za-z0-9_.:-], 1-64)")
        if metric in durations:
            raise ValueError(f"{metric!r} is given twice")
        durations[metric] = parse_duration(duration)
    return durations


def format_duration(seconds: float | None) -> str:
    """``30d``, ``12h``, ``forever``: the shortest exact way to write ``seconds``."""
    if seconds is None:
        return "forever"
    for unit in ("y", "w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each kind of data is kept, in seconds (None: forever)."""

    raw: float | None = 30 * DAY
    minute: float | None = 365 * DAY
    hour: float | None = None
    day: float | None = None
    raw_metrics: Mapping[str, float | None] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the log, e.g. ``raw 30d (rssi 7d), per minute 1y, hourly forever,
        daily forever``."""
        overrides = ", ".join(
            f"{m} {format_duration(k)}" for m, k in sorted(self.raw_metrics.items())
        )
        raw = f"raw {format_duration(self.raw)}" + (f" ({overrides})" if overrides else "")
        return (
            f"{raw}, per minute {format_duration(self.minute)}, hourly "
            f"{format_duration(self.hour)}, daily {format_duration(self.day)}"
        )

    def raw_cutoffs(self, now: float) -> tuple[float | None, dict[str, float | None]]:
        """(The default raw cutoff, each overridden metric's cutoff): samples older than a
        cutoff lose those metrics; None keeps them forever."""
        return _cutoff(now, self.raw), {m: _cutoff(now, k) for m, k in self.raw_metrics.items()}

    def delete_before(self, now: float) -> float | None:
        """Samples older than this have no metric left to keep (None: never)."""
        cutoffs = [_cutoff(now, self.raw), *(_cutoff(now, k) for k in self.raw_metrics.values())]
        if any(cutoff is None for cutoff in cutoffs):
            return None
        return min(c for c in cutoffs if c is not None)

    def aggregate_cutoff(self, resolution: str, now: float) -> float | None:
        """Rows of ``resolution`` (``1m``, ``1h``, ``1d``) older than this are deleted."""
        keep = {"1m": self.minute, "1h": self.hour, "1d": self.day}[resolution]
        return _cutoff(now, keep)


def _cutoff(now: float, keep: float | None) -> float | None:
    return None if keep is None else now - keep


def choose_resolution(bucket: float, since: float, horizons: Mapping[str, float]) -> str:
    """The resolution a series of ``bucket``-second buckets from ``since`` is read from.

    The finest whose rows are no wider than the bucket (raw below a minute, then 1m, 1h,
    1d); if that resolution's data no longer reaches back to ``since`` (``horizons``: the
    oldest time each still holds, after retention), the next coarser one that does, else
    the one that reaches back furthest.
    """
    names = [name for name, _ in RESOLUTIONS]
    start = max(i for i, (_, width) in enumerate(RESOLUTIONS) if width <= bucket)
    candidates = names[start:]
    for name in candidates:
        if horizons.get(name, -math.inf) <= since:
            return name
    return min(candidates, key=lambda name: (horizons.get(name, -math.inf), names.index(name)))


def width_of(resolution: str) -> float:
    """Seconds per row of ``resolution`` (0 for raw)."""
    return dict(RESOLUTIONS)[resolution]


def align(since: float, bucket: float, resolution: str) -> tuple[float, float]:
    """(since, bucket) aligned to whole rows of ``resolution``: ``since`` starts a row and
    ``bucket`` is a whole number of rows (at least one)."""
    width = width_of(resolution)
    if not width:
        return since, bucket
    return since - since % width, max(1, round(bucket / width)) * width
