"""Where tasks and commands are in their lives (pure, no I/O).

A task goes ``queued`` -> ``delivered`` (the app's receipt) -> ``seen`` (the person saw
it: a receipt that says so) -> ``done`` (a receipt that says so), or ``queued`` ->
``expired``. Receipts only move a task forward: one may skip states (``done`` straight
from ``queued``), but a late ``delivered`` after ``seen`` changes nothing, and an expired
task takes no receipt. A command goes ``sent`` -> ``replied``, or ``sent`` -> ``timeout``.
The values are what the API shows and the database stores.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """A task's state."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    SEEN = "seen"
    DONE = "done"
    EXPIRED = "expired"


class CommandState(StrEnum):
    """A device command's state."""

    SENT = "sent"
    REPLIED = "replied"
    TIMEOUT = "timeout"


#: The order in which receipts move a task, first to last.
TASK_PROGRESS = (TaskState.QUEUED, TaskState.DELIVERED, TaskState.SEEN, TaskState.DONE)

#: The states an app's receipt may report.
RECEIPT_STATES = frozenset(TASK_PROGRESS[1:])


def receipt_sources(reported: TaskState) -> frozenset[TaskState]:
    """The states from which a receipt reporting ``reported`` moves a task: every state
    before it in :data:`TASK_PROGRESS` (``seen``: queued or delivered).

    Raises:
        ValueError: ``reported`` is not a state a receipt may report.
    """
    if reported not in RECEIPT_STATES:
        raise ValueError(f"a receipt cannot report {reported!r}")
    return frozenset(TASK_PROGRESS[: TASK_PROGRESS.index(reported)])
