"""Tasks, commands and device credentials in the store (blocking; run in a thread)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, insert, select, update

from mqtthub.downlink.states import CommandState, TaskState, receipt_sources
from mqtthub.store.schema import commands, devices, tasks

#: Deepest nesting of arrays and objects a command's params may have.
MAX_PARAMS_DEPTH = 32
#: Largest a command's params may be, as stored JSON.
MAX_PARAMS_BYTES = 16 * 1024


def nesting_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a JSON-like value (a scalar is 0).

    Iterative, so a hostile value cannot exhaust the stack.
    """
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in item)
    return deepest


def decode_params(text: str) -> dict[str, Any] | None:
    """A stored command's params, or None when the row cannot be shown as an object."""
    try:
        params = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(params, dict) or nesting_depth(params) > MAX_PARAMS_DEPTH:
        return None
    return params


def create_task(engine: Engine, row: dict[str, Any]) -> None:
    """Store a new task (state ``queued``)."""
    with engine.begin() as connection:
        connection.execute(insert(tasks).values(**row, state=TaskState.QUEUED, publishes=0))


def pending_tasks(engine: Engine, recipient: str, now: float) -> list[dict[str, Any]]:
    """A recipient's queued, unexpired tasks, oldest first."""
    query = (
        select(tasks)
        .where(tasks.c.recipient == recipient, tasks.c.state == TaskState.QUEUED)
        .order_by(tasks.c.created_at)
    )
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    return [r for r in rows if r["expires_at"] is None or r["expires_at"] > now]


def count_publish(engine: Engine, task_id: str) -> None:
    """Note that a task was (re)published."""
    with engine.begin() as connection:
        connection.execute(
            update(tasks).where(tasks.c.id == task_id).values(publishes=tasks.c.publishes + 1)
        )


def receipt(engine: Engine, recipient: str, task_id: str, state: TaskState, at: float) -> bool:
    """Apply an app's receipt if it moves the task forward (see
    :func:`~mqtthub.downlink.states.receipt_sources`): ``delivered`` from queued, ``seen``
    from queued or delivered, ``done`` from any of those; set its ``{state}_at``.

    False when it changed nothing (unknown task, expired, or already that far).
    """
    allowed = sorted(receipt_sources(state))
    values: dict[str, Any] = {"state": state, f"{state}_at": at}
    with engine.begin() as connection:
        result = connection.execute(
            update(tasks)
            .where(
                tasks.c.id == task_id,
                tasks.c.recipient == recipient,
                tasks.c.state.in_(allowed),
            )
            .values(**values)
        )
        return bool(result.rowcount)


def expire_tasks(engine: Engine, now: float) -> int:
    """Mark queued tasks past their expiry as ``expired``."""
    with engine.begin() as connection:
        result = connection.execute(
            update(tasks)
            .where(tasks.c.state == TaskState.QUEUED, tasks.c.expires_at.is_not(None))
            .where(tasks.c.expires_at <= now)
            .values(state=TaskState.EXPIRED)
        )
        return int(result.rowcount)


def list_tasks(
    engine: Engine, *, recipient: str | None, state: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Tasks, newest first, optionally for one recipient and in one state."""
    query = select(tasks).order_by(tasks.c.created_at.desc()).limit(limit).offset(offset)
    if recipient:
        query = query.where(tasks.c.recipient == recipient)
    if state:
        query = query.where(tasks.c.state == state)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def get_task(engine: Engine, task_id: str) -> dict[str, Any] | None:
    """One task."""
    with engine.connect() as connection:
        row = connection.execute(select(tasks).where(tasks.c.id == task_id)).first()
        return dict(row._mapping) if row else None


def create_command(engine: Engine, row: dict[str, Any]) -> None:
    """Store a command as ``sent``."""
    with engine.begin() as connection:
        connection.execute(insert(commands).values(**row, state=CommandState.SENT))


def create_commands(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Store several commands as ``sent``, in one transaction."""
    with engine.begin() as connection:
        connection.execute(insert(commands), [{**row, "state": CommandState.SENT} for row in rows])


def reply(engine: Engine, device_id: str, command_id: str, body: str, at: float) -> bool:
    """Complete a sent command with the device's reply."""
    with engine.begin() as connection:
        result = connection.execute(
            update(commands)
            .where(
                commands.c.id == command_id,
                commands.c.device_id == device_id,
                commands.c.state == CommandState.SENT,
            )
            .values(state=CommandState.REPLIED, replied_at=at, reply=body)
        )
        return bool(result.rowcount)


def time_out_commands(engine: Engine, now: float) -> int:
    """Mark sent commands past their deadline as ``timeout``."""
    with engine.begin() as connection:
        result = connection.execute(
            update(commands)
            .where(commands.c.state == CommandState.SENT, commands.c.deadline <= now)
            .values(state=CommandState.TIMEOUT)
        )
        return int(result.rowcount)


def list_commands(engine: Engine, device_id: str, *, limit: int) -> list[dict[str, Any]]:
    """A device's commands, newest first."""
    query = (
        select(commands)
        .where(commands.c.device_id == device_id)
        .order_by(commands.c.created_at.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    for row in rows:
        row["params"] = decode_params(row["params"])
    return rows


def provision(engine: Engine, row: dict[str, Any]) -> bool:
    """Register a device with its password hash; False if it already exists."""
    with engine.begin() as connection:
        if connection.execute(select(devices.c.id).where(devices.c.id == row["id"])).first():
            return False
        connection.execute(insert(devices).values(**row))
        return True


def credentials(engine: Engine) -> list[tuple[str, str]]:
    """(device id, password hash) of every provisioned device."""
    query = (
        select(devices.c.id, devices.c.mqtt_password_hash)
        .where(devices.c.mqtt_password_hash.is_not(None))
        .order_by(devices.c.id)
    )
    with engine.connect() as connection:
        return [(row.id, row.mqtt_password_hash) for row in connection.execute(query)]
