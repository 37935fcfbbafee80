"""Reads for the HTTP API (blocking; run them in a worker thread)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Connection,
    Double,
    Engine,
    Integer,
    String,
    cast,
    func,
    literal,
    select,
    true,
)

from mqtthub.messages import METRIC_PATTERN
from mqtthub.store.samples import key_of
from mqtthub.store.schema import (
    connection_events,
    dead_letters,
    devices,
    latest_readings,
    metric_info,
    presence_events,
    readings_1m,
    samples,
)

#: What the API shows of a device: never its password hash or provisioning endpoint.
DEVICE_COLUMNS = tuple(
    column for column in devices.c if column.name not in {"mqtt_password_hash", "broker_endpoint"}
)


def list_devices(
    engine: Engine,
    *,
    status: str | None = None,
    search: str | None = None,
    limit: int = 100,
    offset: int = 0,
    with_latest: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """Devices ordered by id (filtered by status and an id/name substring) and the total."""
    conditions = []
    if status:
        conditions.append(devices.c.status == status)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(
            devices.c.id.like(pattern, escape="\\") | devices.c.name.like(pattern, escape="\\")
        )
    query = (
        select(*DEVICE_COLUMNS)
        .where(*conditions)
        .order_by(devices.c.id)
        .limit(limit)
        .offset(offset)
    )
    total_query = select(func.count()).select_from(devices).where(*conditions)
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
        total = int(connection.execute(total_query).scalar_one())
        if with_latest and rows:
            _attach_latest(connection, rows, query.with_only_columns(devices.c.id))
    return rows, total


def _attach_latest(connection: Connection, rows: list[dict[str, Any]], ids: Any) -> None:
    by_id = {row["id"]: row for row in rows}
    for row in rows:
        row["latest"] = {}
    query = _LATEST.add_columns(latest_readings.c.device_id).where(
        latest_readings.c.device_id.in_(ids.scalar_subquery())
    )
    for latest in connection.execute(query):
        by_id[latest.device_id]["latest"][latest.metric] = _latest(latest)


# The newest value of each metric, with the unit and display name firmware announced.
_LATEST = select(
    latest_readings.c.metric,
    latest_readings.c.value,
    latest_readings.c.ts,
    metric_info.c.unit,
    metric_info.c.name,
).outerjoin(
    metric_info,
    (metric_info.c.device_id == latest_readings.c.device_id)
    & (metric_info.c.metric == latest_readings.c.metric),
)


def _latest(row: Any) -> dict[str, Any]:
    latest = {"value": row.value, "ts": row.ts}
    if row.unit is not None:
        latest["unit"] = row.unit
    if row.name is not None:
        latest["name"] = row.name
    return latest


def device_series(
    engine: Engine, device_id: str, *, metric: str, since: float, until: float, bucket: float
) -> list[dict[str, Any]]:
    """Min/avg/max of ``metric`` per ``bucket`` seconds over [since, until).

    Buckets of a minute or more are read from the per-minute aggregates (so a week at
    1 reading/s reads 10,080 rows); smaller ones from the samples.
    """
    if METRIC_PATTERN.fullmatch(metric) is None:
        return []
    conditions: list[Any]
    time_column: Any
    low: Any
    high: Any
    mean: Any
    count: Any
    if bucket >= 60:
        # Whole minutes: buckets start on a minute and span a whole number of minutes.
        since -= since % 60
        bucket = round(bucket / 60) * 60
        table, time_column = readings_1m, readings_1m.c.minute
        low, high = func.min(table.c.min), func.max(table.c.max)
        mean, count = func.sum(table.c.sum) / func.sum(table.c.count), func.sum(table.c.count)
        conditions = [table.c.device_id == device_id, table.c.metric == metric]
    else:
        # The metric's value taken out of each sample's JSON once (a materialized CTE),
        # not once per aggregate.
        raw = (
            select(samples.c.ts, _metric_value(engine.dialect.name, metric).label("value"))
            .where(samples.c.device_id == device_id)
            .where(samples.c.ts >= since, samples.c.ts < until)
            .cte("raw")
            .prefix_with("MATERIALIZED")
        )
        time_column, value = raw.c.ts, raw.c.value
        low, high, mean, count = func.min(value), func.max(value), func.avg(value), func.count()
        conditions = [value.is_not(None)]
    index = (
        func.floor((time_column - since) / bucket)
        if engine.dialect.name != "sqlite"
        else (cast((time_column - since) / bucket, Integer))
    )
    query = (
        select(index.label("bucket"), low, mean, high, count)
        .where(*conditions, time_column >= since, time_column < until)
        .group_by(index)
        .order_by(index)
    )
    with engine.connect() as connection:
        return [
            {"ts": since + int(b) * bucket, "min": lo, "avg": avg, "max": hi, "count": int(n)}
            for b, lo, avg, hi, n in connection.execute(query)
        ]


def count_devices(engine: Engine) -> dict[str, int]:
    """How many devices there are by status."""
    query = select(devices.c.status, func.count()).group_by(devices.c.status)
    with engine.connect() as connection:
        return {status: count for status, count in connection.execute(query)}


def get_device(engine: Engine, device_id: str) -> dict[str, Any] | None:
    """One device with ``latest``: metric -> {value, ts}; None when unknown."""
    with engine.connect() as connection:
        row = connection.execute(select(*DEVICE_COLUMNS).where(devices.c.id == device_id)).first()
        if row is None:
            return None
        latest = connection.execute(
            _LATEST.where(latest_readings.c.device_id == device_id).order_by(
                latest_readings.c.metric
            )
        )
        device = dict(row._mapping)
        device["latest"] = {r.metric: _latest(r) for r in latest}
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
    """A device's readings, newest first, filtered by metric and time range.

    Read from ``samples`` newest first (its primary key), one row per value.
    """
    dialect = engine.dialect.name
    conditions = [samples.c.device_id == device_id]
    if since is not None:
        conditions.append(samples.c.ts >= since)
    if until is not None:
        conditions.append(samples.c.ts < until)
    if metric is not None:
        if METRIC_PATTERN.fullmatch(metric) is None:
            return []
        value = _metric_value(dialect, metric)
        query = (
            select(samples.c.ts, value.label("value"))
            .where(*conditions, value.is_not(None))
            .order_by(samples.c.ts.desc())
            .limit(limit)
        )
        with engine.connect() as connection:
            return [{"metric": metric, "ts": ts, "value": v} for ts, v in connection.execute(query)]
    # The newest ``limit`` values are among the newest ``limit`` samples (each has at least
    # one): take those by the primary key first, so only they are expanded and sorted.
    newest = (
        select(samples.c.ts, samples.c.metrics)
        .where(*conditions)
        .order_by(samples.c.ts.desc())
        .limit(limit)
        .subquery()
    )
    each: Any
    if dialect == "sqlite":
        each = func.json_each(newest.c.metrics).table_valued("key", "value")
        key, value = each.c.key, each.c.value
    else:
        each = func.json_each_text(newest.c.metrics).table_valued("key", "value").lateral()
        key, value = each.c.key, cast(each.c.value, Double)
    query = (
        select(key.label("metric"), newest.c.ts, value.label("value"))
        .select_from(newest.join(each, true()))
        .order_by(newest.c.ts.desc(), key)
        .limit(limit)
    )
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def _metric_value(dialect: str, metric: str) -> Any:
    """SQL for one metric's value in ``samples.metrics`` (NULL where it has none)."""
    if dialect == "sqlite":
        return func.json_extract(samples.c.metrics, key_of(dialect, metric), type_=Double)
    return cast(samples.c.metrics.op("->>")(literal(metric, String)), Double)


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
