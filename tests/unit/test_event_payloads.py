"""Unit tests for the NOTIFY payloads that carry live events between workers."""

from __future__ import annotations

import orjson

from mqtthub.store.notify import PAYLOAD_LIMIT, payloads


def decoded(texts: list[str]) -> list[list[object]]:
    events: list[list[object]] = []
    for text in texts:
        message = orjson.loads(text)
        assert message["o"] == "w1"
        events.extend(message["e"])
    return events


def test_events_are_split_into_payloads_postgresql_accepts_in_order() -> None:
    events = [
        ("device", {"id": f"d{n}", "latest": {"t": {"value": n, "ts": 1.0}}}) for n in range(500)
    ]
    texts = payloads("w1", events)
    assert len(texts) > 1
    assert all(len(text.encode()) < PAYLOAD_LIMIT for text in texts)
    assert decoded(texts) == [[kind, data] for kind, data in events]


def test_an_event_too_large_for_one_payload_becomes_a_resync() -> None:
    huge = ("device", {"id": "d1", "latest": {f"m{n}": {"value": n} for n in range(2000)}})
    small = ("dead_letter", {"reason": "invalid_json", "topic": "devices/x/sensor"})
    assert decoded(payloads("w1", [small, huge, small])) == [
        ["dead_letter", small[1]],
        ["resync", {}],
        ["dead_letter", small[1]],
    ]


def test_no_events_no_payloads() -> None:
    assert payloads("w1", []) == []
