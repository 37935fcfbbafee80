"""The inbox's own file of tasks: what was shown, its state, what was announced.

A small SQLite file per recipient in the state folder (``inbox-<recipient>.sqlite``), so
tasks survive a restart, a task is announced once (also across restarts, and once per
computer when two copies run side by side: the first to claim it announces it), and a
receipt clicked while offline is sent when the link is back.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mqtthub.inbox.tasks import InboxTask, TaskState, advance, earlier_states

__all__ = ["InboxStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    arrived_at REAL NOT NULL,
    state TEXT NOT NULL,
    sent_state TEXT NOT NULL DEFAULT 'new',
    announced INTEGER NOT NULL DEFAULT 0
)
"""


class InboxStore:
    """Tasks of one recipient on this computer (safe to share between two copies)."""

    def __init__(self, path: Path) -> None:
        """Open (and create) the file at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=10, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL with the default FULL sync: a task is on disk before its `delivered` receipt
        # goes out (after which the server no longer re-sends it).
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def add(self, task: InboxTask) -> bool:
        """Keep ``task``; False when it is already here (the stored copy stays)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO tasks (task_id, title, body, arrived_at, state)"
            " VALUES (?, ?, ?, ?, ?)",
            (task.task_id, task.title, task.body, task.arrived_at, task.state),
        )
        return cursor.rowcount == 1

    def get(self, task_id: str) -> InboxTask | None:
        """The stored task, or None."""
        row = self._db.execute(
            "SELECT task_id, title, body, arrived_at, state FROM tasks WHERE task_id = ?",
            (task_id,),
        ).fetchone()
        return None if row is None else _task(row)

    def tasks(self) -> list[InboxTask]:
        """Every task, newest first."""
        rows = self._db.execute(
            "SELECT task_id, title, body, arrived_at, state FROM tasks"
            " ORDER BY arrived_at DESC, task_id"
        )
        return [_task(row) for row in rows]

    def claim_announcement(self, task_id: str) -> bool:
        """True once per task: the caller announces it (no other copy, no later run)."""
        cursor = self._db.execute(
            "UPDATE tasks SET announced = 1 WHERE task_id = ? AND announced = 0", (task_id,)
        )
        return cursor.rowcount == 1

    def advance(self, task_id: str, wanted: TaskState) -> TaskState | None:
        """Move the task forward to ``wanted``; the new state, or None if nothing changed."""
        task = self.get(task_id)
        if task is None or advance(task.state, wanted) is None:
            return None
        cursor = self._db.execute(
            "UPDATE tasks SET state = ? WHERE task_id = ? AND state = ?",
            (wanted, task_id, task.state),
        )
        return wanted if cursor.rowcount == 1 else None

    def unsent_receipts(self) -> list[tuple[str, TaskState]]:
        """Tasks whose ``seen``/``done`` has not reached the broker yet, oldest first."""
        rows = self._db.execute(
            "SELECT task_id, state FROM tasks WHERE state != sent_state AND state != ?"
            " ORDER BY arrived_at",
            (TaskState.NEW,),
        )
        return [(task_id, TaskState(state)) for task_id, state in rows]

    def receipt_sent(self, task_id: str, state: TaskState) -> None:
        """Note that the receipt for ``state`` went out (or that the server knows it);
        an earlier receipt noted later changes nothing."""
        earlier = earlier_states(state)
        if not earlier:
            return
        marks = ", ".join("?" * len(earlier))
        self._db.execute(
            f"UPDATE tasks SET sent_state = ? WHERE task_id = ? AND sent_state IN ({marks})",  # noqa: S608 -- placeholders only
            (state, task_id, *earlier),
        )


def _task(row: tuple[str, str, str, float, str]) -> InboxTask:
    task_id, title, body, arrived_at, state = row
    return InboxTask(task_id, title, body, arrived_at, TaskState(state))
