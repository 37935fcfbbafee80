"""Where tasks and commands are in their lives (pure, no I/O).

A task goes ``queued`` -> ``delivered`` (the app's receipt) -> ``done`` (a receipt that
says so), or ``queued`` -> ``expired``. A command goes ``sent`` -> ``replied``, or
``sent`` -> ``timeout``. The values are what the API shows and the database stores.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """A task's state."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    DONE = "done"
    EXPIRED = "expired"


class CommandState(StrEnum):
    """A device command's state."""

    SENT = "sent"
    REPLIED = "replied"
    TIMEOUT = "timeout"


#: The states an app's receipt may report.
RECEIPT_STATES = frozenset({TaskState.DELIVERED, TaskState.DONE})
