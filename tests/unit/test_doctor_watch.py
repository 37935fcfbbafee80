"""Unit tests for mqtthub.doctor.watch: only changes are reported, the first failure ends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from mqtthub.doctor.checks import Cause, Check, Outcome, passed
from mqtthub.doctor.watch import changes, render_round, watch

CONFIG = passed("config", "broker=mqtt://127.0.0.1:1883")
TCP = passed("tcp", "127.0.0.1:1883 accepts connections")
TCP_SLOWER = passed("tcp", "127.0.0.1:1883 accepts connections (other detail)")
TCP_DOWN = Check("tcp", Outcome.FAIL, Cause.BROKER_NOT_RUNNING, "refused", "start it")
KEEPALIVE = Check("mqtt_connect", Outcome.WARN, Cause.KEEPALIVE_REJECTED, "capped", "lower")


def test_first_round_reports_everything() -> None:
    assert changes(None, [CONFIG, TCP]) == [CONFIG, TCP]


def test_a_new_detail_alone_is_not_a_change() -> None:
    assert changes({"config": CONFIG, "tcp": TCP}, [CONFIG, TCP_SLOWER]) == []


def test_status_or_cause_changes_are_reported() -> None:
    previous = {"config": CONFIG, "tcp": TCP, "mqtt_connect": passed("mqtt_connect", "ok")}
    assert changes(previous, [CONFIG, TCP_DOWN, KEEPALIVE]) == [TCP_DOWN, KEEPALIVE]


def test_later_rounds_print_only_the_changed_lines() -> None:
    text = render_round([TCP_DOWN], [CONFIG, TCP_DOWN], first=False, target="t", at=0.0)
    assert text.splitlines()[0] == "1970-01-01T00:00:00+00:00 1 changed (failed):"
    assert "[FAIL] tcp" in text
    assert "fix: start it" in text
    assert "config" not in text


def test_watch_prints_changes_and_stops_at_the_first_failure() -> None:
    rounds = iter([[CONFIG, TCP], [CONFIG, TCP_SLOWER], [CONFIG, TCP_DOWN], [CONFIG, TCP]])
    printed: list[str] = []

    async def run() -> tuple[list[Check], str]:
        return next(rounds), "mqtt://127.0.0.1:1883"

    status = asyncio.run(watch(run, 0.0, printed.append))
    assert status == 1
    assert len(printed) == 2  # the baseline and the failure; the unchanged round is silent
    assert printed[0].startswith("mqtthub doctor: mqtt://127.0.0.1:1883")
    assert "[FAIL] tcp" in printed[1]
    assert next(rounds) == [CONFIG, TCP]  # no round after the failure


def test_watch_json_prints_one_line_per_round_with_changes() -> None:
    rounds = iter([[CONFIG, TCP], [CONFIG, TCP_DOWN]])
    printed: list[str] = []

    async def run() -> tuple[list[Check], str]:
        return next(rounds), "t"

    asyncio.run(watch(run, 0.0, printed.append, as_json=True))
    reports: list[dict[str, Any]] = [json.loads(text) for text in printed]
    assert [r["ok"] for r in reports] == [True, False]
    assert [c["id"] for c in reports[1]["changes"]] == ["tcp"]
