"""Alert rules and their evaluation as data arrives (pure: no I/O, no clock).

A rule watches one condition for one device, the devices matching labels, or all:

* ``above`` / ``below`` / ``outside`` a metric's thresholds, continuously for at least
  ``for_seconds`` (0: at once), or, with ``window_average``, the average of the last
  ``for_seconds`` of values;
* ``offline``: a device offline for more than ``for_seconds``;
* ``no_data``: nothing from a device for more than ``for_seconds``;
* ``dead_letters``: more than ``threshold`` dead letters from a device within
  ``for_seconds``.

The :class:`Evaluator` sees every reading and dead letter after its batch is stored and
the clock (``tick``); it returns :class:`Change` s: an alert that starts firing or
resolves. Readings are matched through an index by metric and device, so a reading of a
metric no rule watches costs one dictionary lookup.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Condition(StrEnum):
    """What a rule watches."""

    ABOVE = "above"
    BELOW = "below"
    OUTSIDE = "outside"
    OFFLINE = "offline"
    NO_DATA = "no_data"
    DEAD_LETTERS = "dead_letters"


#: Conditions on a metric's values.
METRIC_CONDITIONS = frozenset({Condition.ABOVE, Condition.BELOW, Condition.OUTSIDE})


class AlertState(StrEnum):
    """Where an alert is in its life."""

    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule (see the module docstring)."""

    id: str
    name: str
    condition: Condition
    metric: str | None = None
    threshold: float | None = None
    threshold_high: float | None = None
    for_seconds: float = 0.0
    window_average: bool = False
    device_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def applies_to(self, device_id: str, labels: Mapping[str, str]) -> bool:
        """Whether the rule watches this device."""
        if self.device_id is not None:
            return device_id == self.device_id
        return all(labels.get(key) == value for key, value in self.labels.items())

    def violated_by(self, value: float) -> bool:
        """Whether ``value`` breaks a metric condition."""
        low, high = self.threshold, self.threshold_high
        if self.condition is Condition.ABOVE:
            return low is not None and value > low
        if self.condition is Condition.BELOW:
            return low is not None and value < low
        return (low is not None and value < low) or (high is not None and value > high)


APPLICABLE_LIMIT = 1_000_000  # (device, metric) pairs whose rules are remembered


@dataclass(slots=True)
class _MetricRules:
    """One metric's rules, indexed so that finding a device's takes a few lookups."""

    everyone: list[Rule] = field(default_factory=list)
    by_device: dict[str, list[Rule]] = field(default_factory=dict)
    by_label: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)
    # Devices without rules of their own share the compiled rules of their labels.
    shared: dict[tuple[tuple[str, str], ...], _Compiled] = field(default_factory=dict)

    def add(self, rule: Rule) -> None:
        if rule.device_id is not None:
            self.by_device.setdefault(rule.device_id, []).append(rule)
        elif rule.labels:
            first = min(rule.labels.items())  # the rule is checked whole when found
            self.by_label.setdefault(first, []).append(rule)
        else:
            self.everyone.append(rule)

    def find(self, device_id: str, labels: Mapping[str, str]) -> _Compiled:
        own = self.by_device.get(device_id)
        key = tuple(sorted(labels.items())) if self.by_label else ()
        if not own and key in self.shared:
            return self.shared[key]
        found = [*self.everyone, *(own or ())]
        for pair in labels.items():
            for rule in self.by_label.get(pair, ()):
                if rule.applies_to(device_id, labels):
                    found.append(rule)
        compiled = _Compiled.of(found)
        if not own:
            self.shared[key] = compiled
        return compiled


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One device's rules on one metric, ready for the fast path: a value in
    [``low``, ``high``] breaks none of ``plain`` (so only pairs already in play need a
    look); window averages are grouped by window length, one window each."""

    low: float
    high: float
    plain: tuple[Rule, ...]
    windows: tuple[tuple[float, float, float, tuple[Rule, ...]], ...]  # seconds, low, high

    @classmethod
    def of(cls, rules: list[Rule]) -> _Compiled:
        plain = [rule for rule in rules if not rule.window_average]
        windows: dict[float, list[Rule]] = {}
        for rule in rules:
            if rule.window_average:
                windows.setdefault(rule.for_seconds, []).append(rule)
        low, high = _bounds(plain)
        return cls(
            low,
            high,
            tuple(plain),
            tuple((seconds, *_bounds(group), tuple(group)) for seconds, group in windows.items()),
        )


def _bounds(rules: list[Rule]) -> tuple[float, float]:
    """The range of values that breaks none of ``rules``."""
    low, high = -math.inf, math.inf
    for rule in rules:
        if rule.condition is not Condition.ABOVE and rule.threshold is not None:
            low = max(low, rule.threshold)
        top = rule.threshold_high if rule.condition is Condition.OUTSIDE else rule.threshold
        if rule.condition is not Condition.BELOW and top is not None:
            high = min(high, top)
    return low, high


@dataclass(slots=True)
class _Window:
    """The values of the last ``seconds`` of one device's metric, with their sum."""

    values: deque[tuple[float, float]] = field(default_factory=deque)
    total: float = 0.0

    def add(self, ts: float, value: float, seconds: float) -> float:
        """Add a value; the average over the window."""
        values = self.values
        values.append((ts, value))
        self.total += value
        while values[0][0] < ts - seconds:
            self.total -= values.popleft()[1]
        return self.total / len(values)


@dataclass(frozen=True, slots=True)
class Change:
    """An alert that starts firing or resolves, and the value that caused it."""

    rule_id: str
    device_id: str
    state: AlertState
    value: float | None
    at: float
    detail: str


@dataclass(slots=True)
class _Watch:
    """What the evaluator remembers about one (rule, device) pair."""

    firing: bool = False
    pending_since: float | None = None
    last_value: float | None = None
    window: deque[tuple[float, float]] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the clock-driven conditions need about one device (from the database)."""

    device_id: str
    online: bool
    status_changed_at: float
    last_seen: float


class Evaluator:
    """Evaluates rules incrementally; keeps only the (rule, device) pairs in play."""

    def __init__(
        self, rules: Iterable[Rule] = (), labels: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        """Start with ``rules`` and each device's ``labels``."""
        self._labels: dict[str, Mapping[str, str]] = dict(labels or {})
        self._watches: dict[tuple[str, str], _Watch] = {}
        self.set_rules(rules)

    def set_rules(self, rules: Iterable[Rule]) -> None:
        """Replace the rules (watches of removed rules are forgotten)."""
        self.rules = {rule.id: rule for rule in rules}
        self._by_metric: dict[str, _MetricRules] = {}
        self._dead_letter_rules: list[Rule] = []
        self._clock_rules: list[Rule] = []
        for rule in self.rules.values():
            if rule.condition in METRIC_CONDITIONS and rule.metric:
                self._by_metric.setdefault(rule.metric, _MetricRules()).add(rule)
            elif rule.condition is Condition.DEAD_LETTERS:
                self._dead_letter_rules.append(rule)
            else:
                self._clock_rules.append(rule)
        self._applicable: dict[tuple[str, str], _Compiled] = {}
        self._windows: dict[tuple[str, str, float], _Window] = {}
        self._watches = {key: w for key, w in self._watches.items() if key[0] in self.rules}
        self._in_play: dict[tuple[str, str], int] = {}
        for rule_id, device_id in self._watches:
            self._count(self.rules[rule_id], device_id, 1)

    def set_labels(self, device_id: str, labels: Mapping[str, str]) -> None:
        """A device's labels changed."""
        self._labels[device_id] = labels
        self._applicable = {k: v for k, v in self._applicable.items() if k[0] != device_id}

    def restore_firing(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Alerts still open in the database (at start-up): they can resolve."""
        for rule_id, device_id in pairs:
            if rule_id in self.rules and (rule_id, device_id) not in self._watches:
                self._watches[(rule_id, device_id)] = _Watch(firing=True)
                self._count(self.rules[rule_id], device_id, 1)

    def _count(self, rule: Rule, device_id: str, step: int) -> None:
        """Track how many (rule, device) pairs of a device's metric are in play."""
        if rule.metric is not None and rule.condition in METRIC_CONDITIONS:
            key = (device_id, rule.metric)
            self._in_play[key] = self._in_play.get(key, 0) + step

    def _rules_for(self, device_id: str, metric: str) -> _Compiled:
        key = (device_id, metric)
        found = self._applicable.get(key)
        if found is None:
            found = self._by_metric[metric].find(device_id, self._labels.get(device_id, {}))
            if len(self._applicable) >= APPLICABLE_LIMIT:
                self._applicable.clear()
            self._applicable[key] = found
        return found

    def readings(self, samples: Iterable[tuple[str, float, Mapping[str, float]]]) -> list[Change]:
        """Apply a stored batch's samples ``(device_id, ts, {metric: value})``."""
        changes: list[Change] = []
        by_metric = self._by_metric
        if not by_metric:
            return changes
        in_play = self._in_play
        for device_id, ts, metrics in samples:
            for metric, value in metrics.items():
                if metric not in by_metric:
                    continue
                compiled = self._rules_for(device_id, metric)
                if compiled.windows:
                    self._averages(compiled, device_id, metric, value, ts, changes)
                if compiled.low <= value <= compiled.high and not in_play.get((device_id, metric)):
                    continue  # the usual case: no rule broken, none in play
                for rule in compiled.plain:
                    change = self._reading(rule, device_id, value, ts)
                    if change is not None:
                        changes.append(change)
        return changes

    def _averages(
        self,
        compiled: _Compiled,
        device_id: str,
        metric: str,
        value: float,
        ts: float,
        changes: list[Change],
    ) -> None:
        for seconds, low, high, rules in compiled.windows:
            key = (device_id, metric, seconds)
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window()
            average = window.add(ts, value, seconds)
            if low <= average <= high and not self._in_play.get((device_id, metric)):
                continue
            for rule in rules:
                watch = self._watches.get((rule.id, device_id))
                bad = rule.violated_by(average)
                if watch is None:
                    if not bad:
                        continue
                    watch = self._new_watch(rule, device_id)
                change = self._decide(rule, device_id, watch, bad, average, ts)
                if not watch.firing:
                    self._drop_watch(rule, device_id)
                if change is not None:
                    changes.append(change)

    def _new_watch(self, rule: Rule, device_id: str) -> _Watch:
        watch = self._watches[(rule.id, device_id)] = _Watch()
        self._count(rule, device_id, 1)
        return watch

    def _drop_watch(self, rule: Rule, device_id: str) -> None:
        if self._watches.pop((rule.id, device_id), None) is not None:
            self._count(rule, device_id, -1)

    def _reading(self, rule: Rule, device_id: str, value: float, ts: float) -> Change | None:
        key = (rule.id, device_id)
        watch = self._watches.get(key)
        violated = rule.violated_by(value)
        if watch is None:
            if not violated:
                return None
            watch = self._new_watch(rule, device_id)
        if violated and watch.pending_since is None:
            watch.pending_since = ts
        if not violated:
            watch.pending_since = None
        watch.last_value = value
        due = violated and ts - (watch.pending_since or ts) >= rule.for_seconds
        change = self._decide(rule, device_id, watch, violated if watch.firing else due, value, ts)
        if not watch.firing and watch.pending_since is None:
            self._drop_watch(rule, device_id)  # nothing in play: keep the watches sparse
        return change

    def _decide(
        self, rule: Rule, device_id: str, watch: _Watch, bad: bool, value: float | None, at: float
    ) -> Change | None:
        if bad and not watch.firing:
            watch.firing = True
            return Change(rule.id, device_id, AlertState.FIRING, value, at, _explain(rule, value))
        if not bad and watch.firing:
            watch.firing = False
            watch.pending_since = None
            return Change(rule.id, device_id, AlertState.RESOLVED, value, at, "back to normal")
        return None

    def dead_letters(self, letters: Iterable[tuple[str | None, float]]) -> list[Change]:
        """Apply a stored batch's dead letters ``(device_id, received_at)``."""
        changes: list[Change] = []
        for device_id, at in letters:
            if device_id is None:
                continue
            labels = self._labels.get(device_id, {})
            for rule in self._dead_letter_rules:
                if not rule.applies_to(device_id, labels):
                    continue
                watch = self._watches.setdefault((rule.id, device_id), _Watch())
                watch.window.append((at, 1.0))
                change = self._dead_letter_rate(rule, device_id, watch, at)
                if change is not None:
                    changes.append(change)
        return changes

    def _dead_letter_rate(
        self, rule: Rule, device_id: str, watch: _Watch, now: float
    ) -> Change | None:
        window = watch.window
        while window and window[0][0] < now - rule.for_seconds:
            window.popleft()
        count = float(len(window))
        return self._decide(rule, device_id, watch, count > (rule.threshold or 0), count, now)

    def tick(self, now: float, devices: Iterable[DeviceFacts] | None = None) -> list[Change]:
        """What the clock decides: pending metric conditions that lasted long enough, dead
        letter rates that fell, and (given the devices' stored facts: the leader does)
        offline and no-data conditions."""
        changes: list[Change] = []
        for (rule_id, device_id), watch in list(self._watches.items()):
            rule = self.rules[rule_id]
            if rule.condition is Condition.DEAD_LETTERS:
                change = self._dead_letter_rate(rule, device_id, watch, now)
            elif (
                rule.condition in METRIC_CONDITIONS
                and not rule.window_average
                and watch.pending_since is not None
                and not watch.firing
                and now - watch.pending_since >= rule.for_seconds
            ):
                change = self._decide(rule, device_id, watch, True, watch.last_value, now)
            else:
                change = None
            if change is not None:
                changes.append(change)
        if devices is not None and self._clock_rules:
            for facts in devices:
                labels = self._labels.get(facts.device_id, {})
                for rule in self._clock_rules:
                    if rule.applies_to(facts.device_id, labels):
                        change = self._clock(rule, facts, now)
                        if change is not None:
                            changes.append(change)
        return changes

    def _clock(self, rule: Rule, facts: DeviceFacts, now: float) -> Change | None:
        if rule.condition is Condition.OFFLINE:
            silent = now - facts.status_changed_at
            bad = not facts.online and silent >= rule.for_seconds
        else:
            silent = now - facts.last_seen
            bad = silent >= rule.for_seconds
        key = (rule.id, facts.device_id)
        watch = self._watches.get(key)
        if watch is None:
            if not bad:
                return None
            watch = self._watches[key] = _Watch()
        change = self._decide(rule, facts.device_id, watch, bad, round(silent, 1), now)
        if not watch.firing:
            self._watches.pop(key, None)
        return change


def _g(number: float | None) -> str:
    return "?" if number is None else f"{number:g}"


def _explain(rule: Rule, value: float | None) -> str:
    shown = _g(value)
    if rule.condition is Condition.OFFLINE:
        return f"offline for {shown} s (rule: more than {rule.for_seconds:g} s)"
    if rule.condition is Condition.NO_DATA:
        return f"no message for {shown} s (rule: more than {rule.for_seconds:g} s)"
    if rule.condition is Condition.DEAD_LETTERS:
        limit = _g(rule.threshold)
        return f"{shown} dead letters within {rule.for_seconds:g} s (rule: more than {limit})"
    how = "average " if rule.window_average else ""
    limits = {
        Condition.ABOVE: f"above {_g(rule.threshold)}",
        Condition.BELOW: f"below {_g(rule.threshold)}",
        Condition.OUTSIDE: f"outside [{_g(rule.threshold)}, {_g(rule.threshold_high)}]",
    }[rule.condition]
    span = f" for {rule.for_seconds:g} s" if rule.for_seconds else ""
    return f"{rule.metric} {how}{shown} is {limits}{span}"
