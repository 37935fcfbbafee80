"""Reads for the HTTP API (blocking; run them in a worker thread)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from mqtthub.store.schema import (
    connection_events,
    dead_letters,
    devices,
    latest_readings,
    presence_events,
    readings,
)


def list_devices(
    engine: Engine, *, status: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """Devices ordered by id, optionally only those with ``status``."""
    query = select(devices).order_by(devices.c.id).limit(limit).offset(offset)
    if status:
        query = query.where(devices.c.status == status)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def count_devices(engine: Engine) -> dict[str, int]:
    """How many devices there are by status."""
    query = select(devices.c.status, func.count()).group_by(devices.c.status)
    with engine.connect() as connection:
        return {status: count for status, count in connection.execute(query)}


def get_device(engine: Engine, device_id: str) -> dict[str, Any] | None:
    """One device with ``latest``: metric -> {value, ts}; None when unknown."""
    with engine.connect() as connection:
        row = connection.execute(select(devices).where(devices.c.id == device_id)).first()
        if row is None:
            return None
        latest = connection.execute(
            select(latest_readings.c.metric, latest_readings.c.value, latest_readings.c.ts)
            .where(latest_readings.c.device_id == device_id)
            .order_by(latest_readings.c.metric)
        )
        device = dict(row._mapping)
        device["latest"] = {r.metric: {"value": r.value, "ts": r.ts} for r in latest}
        return device


def device_readings(
    engine: Engine,
    device_id: str,
    *,
    metric: str | None,
    since: float | None,
    until: float | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A device's readings, newest first, filtered by metric and time range."""
    query = (
        select(readings.c.metric, readings.c.ts, readings.c.value)
        .where(readings.c.device_id == device_id)
        .order_by(readings.c.ts.desc(), readings.c.metric)
        .limit(limit)
    )
    if metric:
        query = query.where(readings.c.metric == metric)
    if since is not None:
        query = query.where(readings.c.ts >= since)
    if until is not None:
        query = query.where(readings.c.ts < until)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def list_dead_letters(
    engine: Engine, *, reason: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """Dead letters, newest first."""
    query = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit).offset(offset)
    if reason:
        query = query.where(dead_letters.c.reason == reason)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def device_events(
    engine: Engine, device_id: str, *, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """A device's presence transitions, newest first."""
    query = (
        select(
            presence_events.c.at,
            presence_events.c.status,
            presence_events.c.reason,
            presence_events.c.detail,
        )
        .where(presence_events.c.device_id == device_id)
        .order_by(presence_events.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def stored_connection_events(engine: Engine, *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest stored connection events (all instances that share the database)."""
    query = select(connection_events).order_by(connection_events.c.id.desc()).limit(limit)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]
