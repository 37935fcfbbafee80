"""Tasks as the inbox shows them, and how their state may change (pure, no I/O).

A task is ``new`` when it arrives, ``seen`` once the person marks it so and ``done`` at
the end. States only move forward: a late ``seen`` from another copy of the app never
reopens a task that is done. ``seen`` and ``done`` are also receipts the server follows
(``delivered`` is sent by :class:`~mqtthub.client.TaskListener` on arrival).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "InboxTask",
    "TaskState",
    "advance",
    "earlier_states",
    "from_message",
    "state_of_receipt",
]

MAX_TITLE = 200
MAX_BODY = 10_000


class TaskState(StrEnum):
    """Where a task is for the person."""

    NEW = "new"
    SEEN = "seen"
    DONE = "done"


_ORDER = {TaskState.NEW: 0, TaskState.SEEN: 1, TaskState.DONE: 2}


@dataclass(frozen=True, slots=True)
class InboxTask:
    """One task in the inbox.

    Attributes:
        task_id: the server's task id.
        title: one line, as sent (plain text; never rendered as markup).
        body: the text, as sent.
        arrived_at: when this computer first received it (epoch seconds).
        state: ``new``, ``seen`` or ``done``.
    """

    task_id: str
    title: str
    body: str
    arrived_at: float
    state: TaskState = TaskState.NEW


def advance(current: TaskState, wanted: TaskState) -> TaskState | None:
    """The state after asking for ``wanted``; None when that would not move forward."""
    return wanted if _ORDER[wanted] > _ORDER[current] else None


def earlier_states(state: TaskState) -> tuple[TaskState, ...]:
    """The states before ``state``."""
    return tuple(s for s, rank in _ORDER.items() if rank < _ORDER[state])


def state_of_receipt(receipt: str) -> TaskState | None:
    """The inbox state a receipt on the wire means (``seen``, ``done``), else None."""
    return {"seen": TaskState.SEEN, "done": TaskState.DONE}.get(receipt)


def from_message(task: dict[str, Any], *, arrived_at: float) -> InboxTask | None:
    """A task from the JSON object the server publishes; None without a usable id.

    Title and body are turned into text and cut to a sane length, whatever was sent.
    """
    task_id = task.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        return None
    title = task.get("title")
    body = task.get("body")
    return InboxTask(
        task_id=task_id,
        title=("" if title is None else str(title))[:MAX_TITLE],
        body=("" if body is None else str(body))[:MAX_BODY],
        arrived_at=arrived_at,
    )
