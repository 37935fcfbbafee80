"""Unit tests for mqtthub.retention: durations, the policy's cutoffs, resolution choice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mqtthub.config import load_settings
from mqtthub.errors import ConfigError
from mqtthub.retention import (
    DAY,
    HOUR,
    RetentionPolicy,
    align,
    choose_resolution,
    format_duration,
    parse_duration,
    parse_metric_durations,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * DAY),
        ("12h", 12 * HOUR),
        ("90m", 5400.0),
        ("2w", 14 * DAY),
        ("1y", 365 * DAY),
        ("3600", 3600.0),
        (" 1.5d ", 1.5 * DAY),
        ("0", None),
        ("forever", None),
        ("Never", None),
    ],
)
def test_durations(text: str, seconds: float | None) -> None:
    """Durations read as operators write them; 0 and forever keep everything."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30 days", "-1d", "d", "10s", "1.5.2h"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    """A duration that is not one (or keeps data less than a minute) is refused."""
    with pytest.raises(ValueError, match=r"duration|minute"):
        parse_duration(text)


def test_metric_durations() -> None:
    """rssi=7d,temperature=forever: one retention per metric."""
    assert parse_metric_durations("rssi=7d, temperature=forever,") == {
        "rssi": 7 * DAY,
        "temperature": None,
    }
    assert parse_metric_durations("") == {}
    for bad in ("rssi", "rssi=7d,rssi=8d", "bad metric=1d", "=1d"):
        with pytest.raises(ValueError, match=r"metric|twice|duration"):
            parse_metric_durations(bad)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (30 * DAY, 12 * HOUR, None, 90.0)] == [
        "30d",
        "12h",
        "forever",
        "90s",
    ]


def test_the_policy_in_one_line_for_the_log() -> None:
    assert RetentionPolicy().describe() == ("raw 30d, per minute 1y, hourly forever, daily forever")
    policy = RetentionPolicy(raw=7 * DAY, hour=2 * 365 * DAY, raw_metrics={"rssi": DAY, "t": None})
    assert policy.describe() == (
        "raw 1w (rssi 1d, t forever), per minute 1y, hourly 2y, daily forever"
    )


def test_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A bad retention setting stops serve with a message naming the variable."""
    for name in list(os.environ):
        if name.upper().startswith(("MQTTHUB_", "MQTT_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MQTTHUB_RETENTION_RAW_METRICS", "rssi=7x")
    with pytest.raises(
        ConfigError, match=r"^MQTTHUB_RETENTION_RAW_METRICS: '7x' is not a duration"
    ):
        load_settings()
    monkeypatch.setenv("MQTTHUB_RETENTION_RAW_METRICS", "rssi=7d")
    monkeypatch.setenv("MQTTHUB_RETENTION_1M", "soon")
    with pytest.raises(ConfigError, match=r"^MQTTHUB_RETENTION_1M: "):
        load_settings()
    monkeypatch.setenv("MQTTHUB_RETENTION_1M", "400d")
    policy = load_settings().retention
    assert policy == RetentionPolicy(
        raw=30 * DAY, minute=400 * DAY, hour=None, day=None, raw_metrics={"rssi": 7 * DAY}
    )


def test_policy_cutoffs() -> None:
    """Samples go when every metric in them is past its retention."""
    policy = RetentionPolicy(raw=30 * DAY, raw_metrics={"rssi": 7 * DAY, "t": 90 * DAY})
    now = 1_000 * DAY
    assert policy.delete_before(now) == now - 90 * DAY
    assert policy.raw_cutoffs(now) == (now - 30 * DAY, {"rssi": now - 7 * DAY, "t": now - 90 * DAY})
    assert RetentionPolicy(raw=DAY, raw_metrics={"t": None}).delete_before(now) is None
    assert policy.aggregate_cutoff("1m", now) == now - 365 * DAY
    assert policy.aggregate_cutoff("1h", now) is None


@pytest.mark.parametrize(
    ("bucket", "since", "horizons", "expected"),
    [
        (1.0, 0.0, {}, "raw"),
        (59.0, 0.0, {}, "raw"),
        (60.0, 0.0, {}, "1m"),
        (1800.0, 0.0, {}, "1m"),
        (3600.0, 0.0, {}, "1h"),
        (7 * DAY, 0.0, {}, "1d"),
        # raw deleted before 1000: the per-minute rows still have it
        (10.0, 500.0, {"raw": 1000.0}, "1m"),
        (10.0, 1500.0, {"raw": 1000.0}, "raw"),
        # raw and per-minute gone: hourly
        (10.0, 500.0, {"raw": 1000.0, "1m": 800.0}, "1h"),
        # nothing reaches back far enough: the one reaching furthest
        (10.0, 0.0, {"raw": 1000.0, "1m": 800.0, "1h": 900.0, "1d": 900.0}, "1m"),
    ],
)
def test_resolution_choice(
    bucket: float, since: float, horizons: dict[str, float], expected: str
) -> None:
    """The finest resolution no wider than the bucket that still holds the range."""
    assert choose_resolution(bucket, since, horizons) == expected


def test_align() -> None:
    """Buckets of aggregates start on a row and span whole rows."""
    assert align(3700.0, 5000.0, "1h") == (3600.0, 3600.0)
    assert align(3700.0, 100.0, "1h") == (3600.0, 3600.0)
    assert align(125.0, 150.0, "1m") == (120.0, 120.0)
    assert align(125.5, 7.0, "raw") == (125.5, 7.0)
