"""The inbox's pure parts and its task file: states, the status bar, announcements."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from mqtthub.client import check_recipient
from mqtthub.inbox.status import describe_link, reason_in_words
from mqtthub.inbox.store import InboxStore
from mqtthub.inbox.tasks import InboxTask, TaskState, advance, from_message, state_of_receipt
from mqtthub.transport.base import LinkPhase, LinkState
from mqtthub.transport.history import ConnectionEvent, LinkEvent

BROKER = "mqtt://127.0.0.1:1883"


def link(phase: LinkPhase, reason: str | None = None, since: float = 1_000.0) -> LinkState:
    return LinkState(
        phase, reason, "MQTT 5" if phase is LinkPhase.CONNECTED else None, since, BROKER
    )


def event(kind: LinkEvent, reason: str, detail: str = "") -> ConnectionEvent:
    return ConnectionEvent(990.0, kind, reason, detail=detail)


# -- task states ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "wanted", "after"),
    [
        (TaskState.NEW, TaskState.SEEN, TaskState.SEEN),
        (TaskState.NEW, TaskState.DONE, TaskState.DONE),
        (TaskState.SEEN, TaskState.DONE, TaskState.DONE),
        (TaskState.SEEN, TaskState.SEEN, None),
        (TaskState.DONE, TaskState.SEEN, None),
        (TaskState.DONE, TaskState.NEW, None),
    ],
)
def test_states_only_move_forward(
    current: TaskState, wanted: TaskState, after: TaskState | None
) -> None:
    assert advance(current, wanted) == after


def test_receipts_on_the_wire_map_to_inbox_states() -> None:
    assert state_of_receipt("seen") is TaskState.SEEN
    assert state_of_receipt("done") is TaskState.DONE
    assert state_of_receipt("delivered") is None
    assert state_of_receipt("DONE") is None


def test_a_task_message_becomes_text_whatever_was_sent() -> None:
    task = from_message({"task_id": "t1", "title": 42, "body": None, "extra": [1]}, arrived_at=5.0)
    assert task == InboxTask("t1", "42", "", 5.0, TaskState.NEW)
    long = from_message({"task_id": "t2", "title": "x" * 1000, "body": "y" * 20_000}, arrived_at=1)
    assert long is not None
    assert (len(long.title), len(long.body)) == (200, 10_000)
    assert from_message({"title": "no id"}, arrived_at=1) is None
    assert from_message({"task_id": 7}, arrived_at=1) is None


@pytest.mark.parametrize("recipient", ["", "a/b", "+", "emp#1"])
def test_a_recipient_is_one_topic_level(recipient: str) -> None:
    with pytest.raises(ValueError, match="one topic level"):
        check_recipient(recipient)


# -- the status bar ------------------------------------------------------------------------


def test_connected_since_in_local_time() -> None:
    status = describe_link(
        link(LinkPhase.CONNECTED), now=1_005, next_attempt_at=None, last_event=None
    )
    since = datetime.fromtimestamp(1_000.0).strftime("%H:%M:%S")
    assert status.text == f"Connected to {BROKER} since {since}"
    assert status.connected


def test_disconnected_says_why_and_counts_down_to_the_next_attempt() -> None:
    state = link(LinkPhase.DISCONNECTED, "connection_refused")
    last = event(LinkEvent.FAILED, "connection_refused", "connection refused")
    status = describe_link(state, now=1_000.2, next_attempt_at=1_004.0, last_event=last)
    assert status.text == (
        f"Disconnected: the broker cannot be reached (nothing listens at {BROKER}); "
        "next attempt in 4 s"
    )
    assert not status.connected
    later = describe_link(state, now=1_003.5, next_attempt_at=1_004.0, last_event=last)
    assert later.text.endswith("next attempt in 1 s")
    waiting = describe_link(state, now=1_000, next_attempt_at=None, last_event=last)
    assert waiting.text.endswith("; reconnecting…")


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("not_authorized", "not authorized: the broker refused the user name or password"),
        ("bad_credentials", "not authorized: the broker refused the user name or password"),
        ("client_id_conflict", "another program connected with this window's client id"),
        ("connection_lost", "the connection to the broker was lost"),
        ("tls_verification_failed", "TLS problem: certificate not trusted"),
        ("client_cert_rejected", "TLS problem: certificate not trusted"),
        ("something_new", "certificate not trusted"),
    ],
)
def test_reasons_in_words(reason: str, words: str) -> None:
    assert reason_in_words(reason, broker=BROKER, detail="certificate not trusted").startswith(
        words
    )


def test_connecting_again_tells_what_the_last_attempt_met() -> None:
    last = event(LinkEvent.REFUSED, "not_authorized")
    status = describe_link(
        link(LinkPhase.CONNECTING), now=1_000, next_attempt_at=None, last_event=last
    )
    assert status.text == (
        f"Connecting to {BROKER}… (last attempt: not authorized: the broker refused the user "
        "name or password)"
    )
    first = describe_link(
        link(LinkPhase.STARTING), now=1_000, next_attempt_at=None, last_event=None
    )
    assert first.text == f"Connecting to {BROKER}…"


def test_a_taken_over_client_id_is_named_even_when_the_broker_said_nothing() -> None:
    state = link(LinkPhase.DISCONNECTED, "connection_lost")
    status = describe_link(
        state, now=1_000, next_attempt_at=1_001, last_event=None, taken_over=True
    )
    assert "another program connected with this window's client id" in status.text
    up = describe_link(
        link(LinkPhase.CONNECTED), now=1_000, next_attempt_at=None, last_event=None, taken_over=True
    )
    assert up.connected
    assert "took over the connection several times" in up.text


# -- the task file -------------------------------------------------------------------------


def test_the_task_file_keeps_tasks_and_announces_each_once(tmp_path: Path) -> None:
    path = tmp_path / "inbox-61016968.sqlite"
    first, second = InboxStore(path), InboxStore(path)  # two copies on one computer
    task = InboxTask("t1", "Pump", "check", 10.0)
    assert first.add(task)
    assert not second.add(InboxTask("t1", "changed", "", 11.0))
    assert first.claim_announcement("t1")
    assert not second.claim_announcement("t1")
    first.close()
    second.close()
    again = InboxStore(path)  # a restart
    assert again.tasks() == [task]
    assert not again.claim_announcement("t1")
    again.close()


def test_receipts_are_resent_until_they_went_out(tmp_path: Path) -> None:
    store = InboxStore(tmp_path / "inbox.sqlite")
    store.add(InboxTask("old", "a", "", 1.0))
    store.add(InboxTask("new", "b", "", 2.0))
    assert store.tasks()[0].task_id == "new"  # newest first
    assert store.advance("old", TaskState.SEEN) is TaskState.SEEN
    assert store.advance("old", TaskState.SEEN) is None
    assert store.advance("new", TaskState.DONE) is TaskState.DONE
    assert store.advance("new", TaskState.SEEN) is None  # never back
    assert store.unsent_receipts() == [("old", TaskState.SEEN), ("new", TaskState.DONE)]
    store.receipt_sent("new", TaskState.DONE)
    store.receipt_sent("new", TaskState.SEEN)  # a late echo of an earlier receipt
    assert store.unsent_receipts() == [("old", TaskState.SEEN)]
    assert store.advance("missing", TaskState.DONE) is None
    store.close()
