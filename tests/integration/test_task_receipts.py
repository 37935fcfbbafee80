"""Task receipts in the store, on a real SQLite file and a real PostgreSQL database:
queued -> delivered -> seen -> done, never backwards, no receipt for an expired task."""

from __future__ import annotations

from typing import Any

from mqtthub.downlink.states import TaskState
from mqtthub.store import downlink as db
from mqtthub.store.database import Store

T0 = 1_790_000_000.0
ANN = "61016968"


def new_task(store: Store, task_id: str, *, expires_at: float | None = None) -> None:
    row = {
        "id": task_id,
        "recipient": ANN,
        "title": "Inspect pump 3",
        "body": "",
        "created_at": T0,
        "expires_at": expires_at,
    }
    store.read(db.create_task, row)


def times(store: Store, task_id: str) -> tuple[Any, ...]:
    task = store.read(db.get_task, task_id)
    assert task is not None
    return task["state"], task["delivered_at"], task["seen_at"], task["done_at"]


def receipt(store: Store, task_id: str, state: TaskState, at: float) -> bool:
    return bool(store.read(db.receipt, ANN, task_id, state, at))


def test_receipts_move_a_task_forward_and_never_back(store: Store) -> None:
    new_task(store, "t1")
    assert receipt(store, "t1", TaskState.DELIVERED, T0 + 1)
    assert receipt(store, "t1", TaskState.SEEN, T0 + 2)
    assert times(store, "t1") == ("seen", T0 + 1, T0 + 2, None)
    assert not receipt(store, "t1", TaskState.DELIVERED, T0 + 3)  # late: changes nothing
    assert not receipt(store, "t1", TaskState.SEEN, T0 + 4)  # a duplicate neither
    assert times(store, "t1") == ("seen", T0 + 1, T0 + 2, None)
    assert receipt(store, "t1", TaskState.DONE, T0 + 5)
    assert not receipt(store, "t1", TaskState.SEEN, T0 + 6)
    assert not receipt(store, "t1", TaskState.DELIVERED, T0 + 7)
    assert times(store, "t1") == ("done", T0 + 1, T0 + 2, T0 + 5)


def test_receipts_may_skip_states(store: Store) -> None:
    new_task(store, "seen-first")
    new_task(store, "done-first")
    assert receipt(store, "seen-first", TaskState.SEEN, T0 + 1)
    assert receipt(store, "done-first", TaskState.DONE, T0 + 1)
    assert times(store, "seen-first") == ("seen", None, T0 + 1, None)
    assert times(store, "done-first") == ("done", None, None, T0 + 1)
    assert not receipt(store, "seen-first", TaskState.DELIVERED, T0 + 2)
    assert times(store, "seen-first") == ("seen", None, T0 + 1, None)


def test_only_queued_tasks_expire_and_expired_ones_take_no_receipt(store: Store) -> None:
    for task_id in ("queued", "delivered", "seen"):
        new_task(store, task_id, expires_at=T0 + 10)
    receipt(store, "delivered", TaskState.DELIVERED, T0 + 1)
    receipt(store, "seen", TaskState.SEEN, T0 + 1)
    assert store.read(db.expire_tasks, T0 + 10) == 1
    assert [times(store, t)[0] for t in ("queued", "delivered", "seen")] == [
        "expired",
        "delivered",
        "seen",
    ]
    for state in (TaskState.DELIVERED, TaskState.SEEN, TaskState.DONE):
        assert not receipt(store, "queued", state, T0 + 11)
    assert times(store, "queued") == ("expired", None, None, None)


def test_a_receipt_for_another_recipient_or_an_unknown_task_changes_nothing(
    store: Store,
) -> None:
    new_task(store, "t1")
    assert not store.read(db.receipt, "someone-else", "t1", TaskState.SEEN, T0 + 1)
    assert not receipt(store, "unknown", TaskState.SEEN, T0 + 1)
    assert times(store, "t1") == ("queued", None, None, None)


def test_tasks_are_listed_by_state_seen(store: Store) -> None:
    for task_id in ("a", "b", "c"):
        new_task(store, task_id)
    receipt(store, "a", TaskState.SEEN, T0 + 1)
    receipt(store, "b", TaskState.DELIVERED, T0 + 1)
    listed = store.read(db.list_tasks, recipient=ANN, state="seen", limit=10, offset=0)
    assert [(t["id"], t["seen_at"]) for t in listed] == [("a", T0 + 1)]
