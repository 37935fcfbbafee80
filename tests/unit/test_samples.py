"""Readings grouped into samples (one per device and time) and summarised for the store."""

from __future__ import annotations

from mqtthub.messages import group_readings
from mqtthub.pipeline import RawMessage, Sample, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store.samples import distinct_samples, merge_samples, summary_rows

T0 = 1_790_000_020.0


def test_one_object_is_one_sample() -> None:
    """A sensor message of seven values becomes one sample, metrics in payload order."""
    readings = [(f"m{i}", float(i), T0) for i in range(7)]
    assert group_readings("d", readings) == (("d", T0, {f"m{i}": float(i) for i in range(7)}),)


def test_an_array_of_timed_objects_is_one_sample_per_time() -> None:
    """Objects at different times are separate samples; a metric repeated at the same time
    keeps its first value, as the store keeps the first delivery."""
    readings = [("t", 1.0, T0), ("t", 2.0, T0 + 1), ("t", 3.0, T0), ("h", 4.0, T0)]
    assert group_readings("d", readings) == (
        ("d", T0, {"t": 1.0, "h": 4.0}),
        ("d", T0 + 1, {"t": 2.0}),
    )


def test_batch_samples_and_their_narrow_view() -> None:
    """A batch keeps samples; ``readings`` lists them one value per row for its consumers."""
    messages = [
        RawMessage("devices/a/sensor", b'{"t": 1, "h": 2}', 1, False, T0),
        RawMessage("devices/a/sensor", b'{"t": 1, "h": 2}', 1, False, T0 + 1),
        RawMessage("devices/b/heartbeat", b"", 1, False, T0),
    ]
    batch = build_batch(
        parse_all(messages, prefix="devices", max_payload=4096), presence=PresenceEngine()
    )
    assert batch.samples == [("a", T0, {"t": 1.0, "h": 2.0}), ("a", T0 + 1, {"t": 1.0, "h": 2.0})]
    assert batch.readings == [
        ("a", "t", T0, 1.0),
        ("a", "h", T0, 2.0),
        ("a", "t", T0 + 1, 1.0),
        ("a", "h", T0 + 1, 2.0),
    ]


def test_merge_keeps_first_values_and_leaves_the_batch_alone() -> None:
    """Two samples for one device and time merge, first value winning; the batch's own
    dictionaries are not modified (a failed write is retried with the same batch)."""
    first, second = {"t": 1.0}, {"t": 9.0, "h": 2.0}
    merged = merge_samples([("d", T0, first), ("e", T0, {"x": 0.0}), ("d", T0, second)])
    assert merged == {("d", T0): {"t": 1.0, "h": 2.0}, ("e", T0): {"x": 0.0}}
    assert (first, second) == ({"t": 1.0}, {"t": 9.0, "h": 2.0})


def summarize(
    samples: list[Sample],
) -> tuple[dict[tuple[str, str], tuple[float, float]], dict[tuple[str, str, float], list[float]]]:
    """``summary_rows`` as dictionaries: (device, metric) -> (ts, value), and
    (device, metric, minute) -> [min, max, sum, count]."""
    latest_rows, minute_rows = summary_rows(samples)
    latest = {(d, m): (ts, value) for d, m, ts, value in latest_rows}
    minutes = {(d, m, minute): list(group) for d, m, minute, *group in minute_rows}
    return latest, minutes


def test_summary_gives_latest_per_metric_and_minute_aggregates() -> None:
    """The newest value per metric (an older sample arriving later does not win) and
    min/max/sum/count per metric and minute."""
    minute = T0 - T0 % 60
    latest, minutes = summarize(
        [
            ("d", T0 + 5, {"t": 3.0, "h": 1.0}),
            ("d", T0, {"t": 5.0}),
            ("d", minute + 60, {"h": 7.0}),
        ]
    )
    assert latest == {("d", "t"): (T0 + 5, 3.0), ("d", "h"): (minute + 60, 7.0)}
    assert minutes == {
        ("d", "t", minute): [3.0, 5.0, 8.0, 2],
        ("d", "h", minute): [1.0, 1.0, 1.0, 1],
        ("d", "h", minute + 60): [7.0, 7.0, 7.0, 1],
    }


def test_distinct_samples_pass_through_or_merge() -> None:
    """A batch without two samples for one device and time is stored as it is; otherwise
    they merge as ``merge_samples`` does."""
    usual = [("d", T0, {"t": 1.0}), ("d", T0 + 1, {"t": 2.0}), ("e", T0, {"t": 3.0})]
    assert distinct_samples(usual) == usual
    twice = [("d", T0, {"t": 1.0}), ("e", T0, {"x": 0.0}), ("d", T0, {"t": 9.0, "h": 2.0})]
    assert distinct_samples(twice) == [("d", T0, {"t": 1.0, "h": 2.0}), ("e", T0, {"x": 0.0})]


def test_summary_rows_add_up_in_sample_order_whatever_metrics_each_sample_has() -> None:
    """Per-minute sums are added in the order the samples came (so they equal a value by
    value sum exactly), counts are integers, and samples with different metrics in one
    minute are summarised per metric; the newest value per metric wins even when an
    older sample comes later."""
    minute = T0 - T0 % 60
    values = [0.1, 0.2, 0.3, 1e16, 1.0, -0.0]
    same = [("d", minute + i, {"t": v, "h": -v}) for i, v in enumerate(values)]
    mixed = [("e", minute + 2, {"t": 1.0}), ("e", minute + 1, {"h": 5.0, "t": 2.0})]
    latest, minutes = summary_rows(same + mixed)
    sums = {(d, m): (mn, mx, s, n) for d, m, _, mn, mx, s, n in minutes}
    assert sums[("d", "t")] == (-0.0, 1e16, ((((0.1 + 0.2) + 0.3) + 1e16) + 1.0) + -0.0, 6)
    assert sums[("d", "h")][2:] == (((((-0.1 - 0.2) - 0.3) - 1e16) - 1.0) + 0.0, 6)
    assert sums[("e", "t")] == (1.0, 2.0, 3.0, 2)
    assert sums[("e", "h")] == (5.0, 5.0, 5.0, 1)
    assert all(type(n) is int for *_, n in minutes)
    assert sorted(latest) == [
        ("d", "h", minute + 5, 0.0),
        ("d", "t", minute + 5, -0.0),
        ("e", "h", minute + 1, 5.0),
        ("e", "t", minute + 2, 1.0),
    ]
