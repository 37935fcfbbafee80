"""Unit tests for alert rules: when an alert fires and resolves (explicit times, no clock)."""

from __future__ import annotations

from mqtthub.alerts.rules import AlertState, Condition, DeviceFacts, Evaluator, Rule

T0 = 1_790_000_000.0


def above(threshold: float, **options: object) -> Rule:
    return Rule("r1", "hot", Condition.ABOVE, metric="t", threshold=threshold, **options)  # type: ignore[arg-type]


def states(changes: list[object]) -> list[tuple[str, str, float | None]]:
    return [(c.device_id, c.state, c.value) for c in changes]  # type: ignore[attr-defined]


def test_a_value_above_fires_at_once_and_resolves_when_back() -> None:
    evaluator = Evaluator([above(30)])
    assert evaluator.readings([("d1", T0, {"t": 25.0})]) == []
    assert states(evaluator.readings([("d1", T0 + 1, {"t": 31.0})])) == [
        ("d1", AlertState.FIRING, 31.0)
    ]
    assert evaluator.readings([("d1", T0 + 2, {"t": 35.0})]) == []  # one firing, not two
    assert states(evaluator.readings([("d1", T0 + 3, {"t": 29.0})])) == [
        ("d1", AlertState.RESOLVED, 29.0)
    ]


def test_for_seconds_needs_the_condition_to_hold_that_long() -> None:
    evaluator = Evaluator([above(30, for_seconds=10)])
    assert evaluator.readings([("d1", T0, {"t": 31.0})]) == []
    assert evaluator.readings([("d1", T0 + 5, {"t": 32.0})]) == []
    assert evaluator.readings([("d1", T0 + 6, {"t": 20.0})]) == []  # interrupted: starts over
    assert evaluator.readings([("d1", T0 + 7, {"t": 31.0})]) == []
    assert states(evaluator.readings([("d1", T0 + 17, {"t": 31.0})])) == [
        ("d1", AlertState.FIRING, 31.0)
    ]


def test_the_clock_fires_a_condition_that_lasted_without_new_values() -> None:
    evaluator = Evaluator([above(30, for_seconds=10)])
    evaluator.readings([("d1", T0, {"t": 31.0})])
    assert evaluator.tick(T0 + 9) == []
    assert states(evaluator.tick(T0 + 10)) == [("d1", AlertState.FIRING, 31.0)]


def test_window_average() -> None:
    """The average of the values of the last for_seconds decides, not any single value."""
    evaluator = Evaluator([above(30, for_seconds=60, window_average=True)])
    assert evaluator.readings([("d1", T0, {"t": 20.0}), ("d1", T0 + 1, {"t": 10.0})]) == []
    assert evaluator.readings([("d1", T0 + 2, {"t": 55.0})]) == []  # (20 + 10 + 55) / 3 < 30
    changes = evaluator.readings([("d1", T0 + 3, {"t": 60.0})])  # (20 + 10 + 55 + 60) / 4
    assert states(changes) == [("d1", AlertState.FIRING, 36.25)]
    # 61 s later the old values have left the window.
    assert states(evaluator.readings([("d1", T0 + 64, {"t": 20.0})])) == [
        ("d1", AlertState.RESOLVED, 20.0)
    ]


def test_outside_and_below() -> None:
    rules = [
        Rule("r1", "range", Condition.OUTSIDE, metric="t", threshold=10, threshold_high=20),
        Rule("r2", "low battery", Condition.BELOW, metric="v", threshold=3.3),
    ]
    evaluator = Evaluator(rules)
    changes = evaluator.readings([("d1", T0, {"t": 21.0, "v": 3.2})])
    assert sorted((c.rule_id, c.state) for c in changes) == [
        ("r1", AlertState.FIRING),
        ("r2", AlertState.FIRING),
    ]


def test_rules_apply_to_one_device_to_labels_or_to_all() -> None:
    rules = [
        Rule("one", "one", Condition.ABOVE, metric="t", threshold=0, device_id="d1"),
        Rule("lab", "lab", Condition.ABOVE, metric="t", threshold=0, labels={"site": "lab"}),
        Rule("all", "all", Condition.ABOVE, metric="t", threshold=0),
    ]
    evaluator = Evaluator(rules, {"d2": {"site": "lab"}})
    changes = evaluator.readings([("d1", T0, {"t": 1.0}), ("d2", T0, {"t": 1.0})])
    assert sorted((c.rule_id, c.device_id) for c in changes) == [
        ("all", "d1"),
        ("all", "d2"),
        ("lab", "d2"),
        ("one", "d1"),
    ]
    evaluator.set_labels("d3", {"site": "lab"})
    assert {c.rule_id for c in evaluator.readings([("d3", T0, {"t": 1.0})])} == {"lab", "all"}


def test_offline_and_no_data_from_the_stored_facts() -> None:
    rules = [
        Rule("off", "offline", Condition.OFFLINE, for_seconds=60),
        Rule("quiet", "no data", Condition.NO_DATA, for_seconds=120),
    ]
    evaluator = Evaluator(rules)
    gone = DeviceFacts("d1", online=False, status_changed_at=T0, last_seen=T0)
    assert evaluator.tick(T0 + 59, [gone]) == []
    assert [(c.rule_id, c.state) for c in evaluator.tick(T0 + 60, [gone])] == [
        ("off", AlertState.FIRING)
    ]
    assert [(c.rule_id, c.state) for c in evaluator.tick(T0 + 120, [gone])] == [
        ("quiet", AlertState.FIRING)
    ]
    back = DeviceFacts("d1", online=True, status_changed_at=T0 + 130, last_seen=T0 + 130)
    assert sorted((c.rule_id, c.state) for c in evaluator.tick(T0 + 131, [back])) == [
        ("off", AlertState.RESOLVED),
        ("quiet", AlertState.RESOLVED),
    ]


def test_dead_letter_rate() -> None:
    rule = Rule("dl", "garbage", Condition.DEAD_LETTERS, threshold=2, for_seconds=60)
    evaluator = Evaluator([rule])
    assert evaluator.dead_letters([("d1", T0), ("d1", T0 + 1)]) == []
    assert states(evaluator.dead_letters([("d1", T0 + 2), (None, T0 + 2)])) == [
        ("d1", AlertState.FIRING, 3.0)
    ]
    assert evaluator.tick(T0 + 59) == []
    assert states(evaluator.tick(T0 + 61)) == [("d1", AlertState.RESOLVED, 2.0)]


def test_an_alert_open_in_the_database_can_resolve_after_a_restart() -> None:
    evaluator = Evaluator([above(30)])
    evaluator.restore_firing([("r1", "d1"), ("gone-rule", "d1")])
    assert states(evaluator.readings([("d1", T0, {"t": 20.0})])) == [
        ("d1", AlertState.RESOLVED, 20.0)
    ]


def test_metrics_no_rule_watches_keep_no_state() -> None:
    evaluator = Evaluator([above(30)])
    evaluator.readings([(f"d{n}", T0, {"t": 1.0, "h": 50.0}) for n in range(1000)])
    assert evaluator._watches == {}
