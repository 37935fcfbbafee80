"""Unit tests for mqtthub.transport.history: connection events and client-id conflicts.

Every test uses explicit times (seconds after T0): no clocks, no sleeps.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from mqtthub.transport.history import (
    CONFLICT_DROPS,
    KEEP_EVENTS,
    SHORT_SESSION_S,
    ConnectionEvent,
    ConnectionHistory,
    Diagnosis,
    LinkEvent,
)

T0 = 1_700_000_000.0
CLIENT_ID = "mqtthub-test"
V311 = "MQTT 3.1.1"
V5 = "MQTT 5"


def connected(at: float, protocol: str = V311) -> ConnectionEvent:
    return ConnectionEvent(at, "connected", "connected", protocol)


def dropped(
    at: float,
    lasted: float = 5.0,
    *,
    reason: str = "connection_lost",
    code: int | None = None,
    protocol: str = V311,
) -> ConnectionEvent:
    return ConnectionEvent(at, "disconnected", reason, protocol, reason_code=code, lasted=lasted)


def failed(at: float) -> ConnectionEvent:
    return ConnectionEvent(at, "failed", "connection_refused", None, detail="ECONNREFUSED")


def refused(at: float) -> ConnectionEvent:
    return ConnectionEvent(at, "refused", "server_unavailable", V311, reason_code=3)


def taken_over(at: float, lasted: float = 4.0) -> ConnectionEvent:
    """MQTT 5 DISCONNECT 0x8E: another client connected with our client id."""
    return dropped(at, lasted, reason="client_id_conflict", code=0x8E, protocol=V5)


def feed(history: ConnectionHistory, *events: ConnectionEvent) -> list[Diagnosis]:
    """Add events in order; return the diagnoses that were reported (to log)."""
    return [d for d in map(history.add, events) if d is not None]


def short_cycles(start: float, count: int, lasted: float = 5.0) -> list[ConnectionEvent]:
    """``count`` times: the connection is dropped after ``lasted`` s and reconnects at once."""
    events = []
    for i in range(count):
        at = start + i * (lasted + 1)
        events += [dropped(at + lasted, lasted), connected(at + lasted + 1)]
    return events


# --- MQTT 5: the broker says it ---------------------------------------------------------------


def test_mqtt5_session_taken_over_is_diagnosed_at_once() -> None:
    history = ConnectionHistory(CLIENT_ID)
    history.add(connected(T0, V5))
    event = taken_over(T0 + 4)

    diagnosis = history.add(event)

    assert diagnosis is not None
    assert diagnosis.reason == "client_id_conflict"
    assert CLIENT_ID in diagnosis.message
    assert "0x8E" in diagnosis.message
    assert diagnosis.evidence == (event,)


def test_mqtt5_conflict_is_reported_once_while_it_goes_on() -> None:
    history = ConnectionHistory(CLIENT_ID)
    events = []
    for i in range(5):
        events += [connected(T0 + 10 * i, V5), taken_over(T0 + 10 * i + 4)]

    assert [d.reason for d in feed(history, *events)] == ["client_id_conflict"]
    assert history.diagnosis is not None
    assert history.as_dict()["diagnosis"]["reason"] == "client_id_conflict"


def test_mqtt5_conflict_is_reported_again_after_a_long_session() -> None:
    history = ConnectionHistory(CLIENT_ID)
    feed(history, connected(T0, V5), taken_over(T0 + 4), connected(T0 + 5, V5))

    feed(history, dropped(T0 + 3605, 3600, protocol=V5))  # stable for an hour, then lost
    assert history.diagnosis is None

    again = feed(history, connected(T0 + 3606, V5), taken_over(T0 + 3610))
    assert [d.reason for d in again] == ["client_id_conflict"]


# --- MQTT 3.1.1: the pattern ------------------------------------------------------------------


def test_two_quick_drops_with_quick_reconnects_are_no_diagnosis() -> None:
    history = ConnectionHistory(CLIENT_ID)

    assert feed(history, connected(T0), *short_cycles(T0, 2)) == []
    assert history.diagnosis is None


def test_three_quick_drops_each_followed_by_a_quick_reconnect_are_diagnosed_once() -> None:
    history = ConnectionHistory(CLIENT_ID)
    events = [connected(T0), *short_cycles(T0, 3, lasted=5.0)]

    results = [history.add(event) for event in events]

    # Reported when the third drop is followed by a successful reconnect, not before.
    assert results[:-1] == [None] * (len(events) - 1)
    diagnosis = results[-1]
    assert diagnosis is not None
    assert diagnosis.reason == "probable_client_id_conflict"
    assert CLIENT_ID in diagnosis.message
    assert "5.0 s" in diagnosis.message
    drops = [e for e in events if e.event == "disconnected"]
    assert diagnosis.evidence == tuple(drops)


def test_the_fourth_quick_drop_is_not_reported_again() -> None:
    history = ConnectionHistory(CLIENT_ID)
    assert len(feed(history, connected(T0), *short_cycles(T0, 3))) == 1

    assert feed(history, *short_cycles(T0 + 100, 1)) == []
    assert feed(history, *short_cycles(T0 + 200, 5)) == []
    assert history.diagnosis is not None
    assert history.diagnosis.reason == "probable_client_id_conflict"


def test_a_third_drop_without_a_reconnect_yet_is_no_diagnosis() -> None:
    history = ConnectionHistory(CLIENT_ID)
    events = [connected(T0), *short_cycles(T0, 2), dropped(T0 + 20)]

    assert feed(history, *events) == []


def test_drops_at_exactly_the_short_session_limit_count() -> None:
    history = ConnectionHistory(CLIENT_ID)

    reported = feed(history, connected(T0), *short_cycles(T0, 3, lasted=SHORT_SESSION_S))

    assert [d.reason for d in reported] == ["probable_client_id_conflict"]


def test_sessions_longer_than_30_s_are_not_conflict_drops() -> None:
    history = ConnectionHistory(CLIENT_ID)

    assert feed(history, connected(T0), *short_cycles(T0, 6, lasted=SHORT_SESSION_S + 1)) == []


def test_a_long_session_between_drops_breaks_the_pattern() -> None:
    history = ConnectionHistory(CLIENT_ID)
    events = [
        connected(T0),
        *short_cycles(T0, 2),
        dropped(T0 + 600, 580.0),  # this connection was fine for almost ten minutes
        connected(T0 + 601),
        *short_cycles(T0 + 601, 2),
    ]

    assert feed(history, *events) == []
    # One more quick drop completes a fresh run of three.
    assert len(feed(history, *short_cycles(T0 + 700, 1))) == 1


@pytest.mark.parametrize("attempt", [failed, refused], ids=["failed", "refused"])
def test_a_failed_or_refused_attempt_between_drops_breaks_the_pattern(
    attempt: Callable[[float], ConnectionEvent],
) -> None:
    history = ConnectionHistory(CLIENT_ID)
    events = [
        connected(T0),
        *short_cycles(T0, 2),
        dropped(T0 + 20),
        attempt(T0 + 21),  # the reconnect after the third drop was not immediate
        connected(T0 + 25),
        *short_cycles(T0 + 25, 2),
    ]

    assert feed(history, *events) == []
    assert history.diagnosis is None


def test_drops_the_broker_explains_are_not_conflict_drops() -> None:
    """MQTT 5 drops with a reason code (other than 0x8E) have a known cause."""
    history = ConnectionHistory(CLIENT_ID)
    events = [connected(T0, V5)]
    for i in range(4):
        at = T0 + 10 * i
        events += [
            dropped(at + 5, reason="server_busy", code=0x89, protocol=V5),
            connected(at + 6, V5),
        ]

    assert feed(history, *events) == []


def test_a_long_session_forgets_the_diagnosis_so_a_new_conflict_is_reported_again() -> None:
    history = ConnectionHistory(CLIENT_ID)
    assert len(feed(history, connected(T0), *short_cycles(T0, 3))) == 1

    feed(history, dropped(T0 + 1000, 900.0))
    assert history.diagnosis is None
    assert history.as_dict()["diagnosis"] is None

    assert feed(history, connected(T0 + 1001), *short_cycles(T0 + 1001, 2)) == []
    assert len(feed(history, *short_cycles(T0 + 1100, 1))) == 1


def test_stable_forgets_the_diagnosis_and_the_drops() -> None:
    history = ConnectionHistory(CLIENT_ID)
    feed(history, connected(T0), *short_cycles(T0, 3))

    history.stable()

    assert history.diagnosis is None
    assert feed(history, *short_cycles(T0 + 100, CONFLICT_DROPS - 1)) == []
    assert len(feed(history, *short_cycles(T0 + 200, 1))) == 1


# --- counts and as_dict -----------------------------------------------------------------------


def test_counts_by_reason_leave_out_successful_connects() -> None:
    history = ConnectionHistory(CLIENT_ID)
    feed(
        history,
        failed(T0),
        refused(T0 + 1),
        connected(T0 + 2),
        dropped(T0 + 50, 48.0),
        connected(T0 + 51),
        dropped(T0 + 52, 1.0, reason="keepalive_timeout", code=0x8D, protocol=V5),
        failed(T0 + 53),
        connected(T0 + 54),
        taken_over(T0 + 56),
        dropped(T0 + 70, 10.0),
    )

    assert history.counts == {
        "connection_refused": 2,
        "server_unavailable": 1,
        "connection_lost": 2,
        "keepalive_timeout": 1,
        "client_id_conflict": 1,
    }
    assert history.as_dict()["counts"] == dict(history.counts)


def test_as_dict_shape_with_events_newest_first() -> None:
    history = ConnectionHistory(CLIENT_ID)
    events = [connected(T0), *short_cycles(T0, 3)]
    feed(history, *events)

    data = history.as_dict()

    assert set(data) == {"client_id", "events", "counts", "diagnosis", "session_lost"}
    assert data["client_id"] == CLIENT_ID
    assert data["events"] == [event.as_dict() for event in reversed(events)]
    assert data["events"][0] == {
        "at": events[-1].at,
        "event": "connected",
        "reason": "connected",
        "protocol": V311,
        "reason_code": None,
        "lasted": None,
        "detail": "",
    }
    assert data["counts"] == {"connection_lost": 3}
    diagnosis = data["diagnosis"]
    assert set(diagnosis) == {"reason", "message", "evidence"}
    assert diagnosis["reason"] == "probable_client_id_conflict"
    drops = [e.as_dict() for e in events if e.event == "disconnected"]
    assert diagnosis["evidence"] == drops  # oldest first, unlike the event list
    json.dumps(data)  # JSON-ready


def test_as_dict_of_a_fresh_history() -> None:
    assert ConnectionHistory(CLIENT_ID).as_dict() == {
        "client_id": CLIENT_ID,
        "events": [],
        "counts": {},
        "diagnosis": None,
        "session_lost": None,
    }


def test_a_lost_session_is_kept_and_counted() -> None:
    """session_lost is part of a connect: it is counted and shown, nothing else changes."""
    history = ConnectionHistory(CLIENT_ID)
    lost = ConnectionEvent(T0, LinkEvent.SESSION_LOST, "session_lost", "MQTT 5", detail="gone")
    assert history.add(lost) is None
    assert history.as_dict()["session_lost"] == lost.as_dict()
    assert history.counts == {"session_lost": 1}


def test_only_the_last_50_events_are_kept_but_counts_cover_all() -> None:
    history = ConnectionHistory(CLIENT_ID)
    events = [failed(T0 + i) for i in range(KEEP_EVENTS + 10)]
    feed(history, *events)

    kept = history.as_dict()["events"]

    assert KEEP_EVENTS == 50
    assert len(kept) == 50
    assert [e["at"] for e in kept] == [T0 + i for i in reversed(range(10, 60))]
    assert history.counts["connection_refused"] == 60
