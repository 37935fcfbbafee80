"""Reads for the HTTP API (blocking; run them in a worker thread)."""

from __future__ import annotations

import json
import math
import os
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
    or_,
    select,
    text,
    true,
    union_all,
)

from mqtthub.messages import METRIC_PATTERN
from mqtthub.retention import align, choose_resolution
from mqtthub.store.errors import translated
from mqtthub.store.rollups import read_states
from mqtthub.store.samples import key_of, metrics_of
from mqtthub.store.schema import (
    dead_letters,
    devices,
    latest_readings,
    metric_info,
    presence_events,
    readings_1d,
    readings_1h,
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

    The resolution follows the bucket (``retention.choose_resolution``): raw samples below
    a minute, then the per-minute, hourly and daily aggregates (a week at 1 reading/s reads
    10,080 per-minute rows, a year 365 daily ones); where retention deleted the finer data
    of the range, a coarser resolution that still has it. Hours and days not rolled up yet
    are read from the finer rows, so the newest buckets are complete too.
    """
    if METRIC_PATTERN.fullmatch(metric) is None:
        return []
    states = read_states(engine)
    resolution = choose_resolution(bucket, since, _horizons(states, metric))
    since, bucket = align(since, bucket, resolution)
    time_column: Any
    low: Any
    high: Any
    mean: Any
    count: Any
    conditions: list[Any] = []
    if resolution != "raw":
        rows = _aggregate_rows(states, resolution, device_id, metric, since, until)
        time_column = rows.c.t
        low, high = func.min(rows.c.min), func.max(rows.c.max)
        mean, count = func.sum(rows.c.sum) / func.sum(rows.c.count), func.sum(rows.c.count)
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
        conditions = [value.is_not(None), time_column >= since, time_column < until]
    index = (
        func.floor((time_column - since) / bucket)
        if engine.dialect.name != "sqlite"
        else (cast((time_column - since) / bucket, Integer))
    )
    query = (
        select(index.label("bucket"), low, mean, high, count)
        .where(*conditions)
        .group_by(index)
        .order_by(index)
    )
    with engine.connect() as connection:
        return [
            {"ts": since + int(b) * bucket, "min": lo, "avg": avg, "max": hi, "count": int(n)}
            for b, lo, avg, hi, n in connection.execute(query)
        ]


def _horizons(states: dict[str, float], metric: str) -> dict[str, float]:
    """How far back each resolution still holds ``metric`` (``rollup_state``'s ``kept:``
    and ``stripped:`` values; a resolution retention never touched is not listed)."""
    horizons = {
        name: states[f"kept:{name}"] for name in ("1m", "1h", "1d") if f"kept:{name}" in states
    }
    raw = [states[name] for name in ("kept:raw",) if name in states]
    stripped = states.get(f"stripped:{metric}", states.get("stripped:*"))
    if stripped is not None:
        raw.append(stripped)
    if raw:
        horizons["raw"] = max(raw)
    return horizons


def _aggregate_rows(
    states: dict[str, float],
    resolution: str,
    device_id: str,
    metric: str,
    since: float,
    until: float,
) -> Any:
    """The aggregate rows of [since, until) for ``resolution`` (a subquery of t, min, max,
    sum, count): its own rows before the time it is rolled up to (``done:``), the next
    finer ones after that."""
    levels = {
        "1d": (readings_1d, readings_1d.c.day),
        "1h": (readings_1h, readings_1h.c.hour),
        "1m": (readings_1m, readings_1m.c.minute),
    }
    order = list(levels)
    parts = []
    covered = since  # everything before this is read from a coarser level
    for name in order[order.index(resolution) :]:
        done = math.inf if name == "1m" else states.get(f"done:{name}", -math.inf)
        table, column = levels[name]
        upper = min(until, done)
        if upper > covered:
            parts.append(
                select(column.label("t"), table.c.min, table.c.max, table.c.sum, table.c.count)
                .where(table.c.device_id == device_id, table.c.metric == metric)
                .where(column >= covered, column < upper)
            )
        covered = max(covered, done)
    return union_all(*parts).subquery("rows")


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
    after: tuple[float, str] | None = None,
) -> list[dict[str, Any]]:
    """A device's readings, newest first (metrics by name at one time), filtered by metric
    and time range.

    Read from ``samples`` newest first (its primary key), one row per value. ``after``:
    the (ts, metric) of the last reading of the previous page; only readings after it in
    this order come back (keyset pagination: a reading stored meanwhile never shifts a
    page, and none is listed twice).
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
        if after is not None:
            # The same order as below (names compared by the database's collation).
            conditions.append(_after(samples.c.ts, literal(metric, String), after))
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
    # After a cursor, the sample at the cursor's time may have no values left: one more.
    if after is not None:
        conditions.append(samples.c.ts <= after[0])
    newest = (
        select(samples.c.ts, samples.c.metrics)
        .where(*conditions)
        .order_by(samples.c.ts.desc())
        .limit(limit if after is None else limit + 1)
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
    if after is not None:
        query = query.where(_after(newest.c.ts, key, after))
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def _after(ts: Any, metric: Any, after: tuple[float, str]) -> Any:
    """Readings after ``after`` = (ts, metric) in the order newest first, then by name."""
    return (ts < after[0]) | ((ts == after[0]) & (metric > literal(after[1], String)))


def _metric_value(dialect: str, metric: str) -> Any:
    """SQL for one metric's value in ``samples.metrics`` (NULL where it has none)."""
    if dialect == "sqlite":
        return func.json_extract(samples.c.metrics, key_of(dialect, metric), type_=Double)
    return cast(samples.c.metrics.op("->>")(literal(metric, String)), Double)


#: One exported reading: (device_id, ts, {metric: value}) of one sample.
ExportRow = tuple[str, float, dict[str, float]]


class ExportPages:
    """Every sample of the chosen devices in a time range, a page at a time (blocking).

    Devices in id order, each one's samples oldest first, read by keyset on the primary key
    (device_id, ts): each page is one short indexed query of at most ``page_size`` samples
    on a connection held until :meth:`close`, so memory stays flat however many readings
    there are and no transaction stays open between pages (PostgreSQL's vacuum and
    SQLite's checkpoints are never held back by a slow download).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        device_ids: list[str] | None,
        metrics: list[str] | None,
        since: float | None,
        until: float | None,
        page_size: int = 2000,
    ) -> None:
        """Export ``device_ids`` (None: every device) and ``metrics`` (None: all)."""
        self._engine = engine
        self._wanted = device_ids
        self._metrics = frozenset(metrics) if metrics else None
        self._since = since
        self._until = until
        self._page_size = page_size
        self._connection: Connection | None = None
        self._devices: list[str] | None = None
        self._position: tuple[int, float | None] = (0, None)  # device index, last ts

    def next_page(self) -> list[ExportRow] | None:
        """The next samples (only the wanted metrics), or None when there are no more.

        Raises:
            StoreError: the database failed (``StoreUnavailableError`` when unreachable).
        """
        with translated():
            if self._connection is None:
                self._connection = self._engine.connect()
                self._devices = self._device_ids(self._connection)
            try:
                return self._fill(self._connection)
            finally:
                self._connection.rollback()  # no transaction left open between pages

    def close(self) -> None:
        """Give the connection back."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _device_ids(self, connection: Connection) -> list[str]:
        query = select(devices.c.id).order_by(devices.c.id)
        if self._wanted is not None:
            query = query.where(devices.c.id.in_(self._wanted))
        return [device_id for (device_id,) in connection.execute(query)]

    def _fill(self, connection: Connection) -> list[ExportRow] | None:
        assert self._devices is not None
        page: list[ExportRow] = []
        index, last_ts = self._position
        while index < len(self._devices) and len(page) < self._page_size:
            device_id = self._devices[index]
            asked = self._page_size - len(page)
            rows = connection.execute(self._query(device_id, last_ts, asked)).all()
            for ts, stored in rows:
                values = metrics_of(stored)
                if self._metrics is not None:
                    values = {m: v for m, v in values.items() if m in self._metrics}
                if values:
                    page.append((device_id, ts, values))
            if len(rows) < asked:
                index, last_ts = index + 1, None  # this device is done
            else:
                last_ts = rows[-1][0]
        self._position = (index, last_ts)
        return page or None

    def _query(self, device_id: str, after: float | None, limit: int) -> Any:
        conditions = [samples.c.device_id == device_id]
        if after is not None:
            conditions.append(samples.c.ts > after)
        elif self._since is not None:
            conditions.append(samples.c.ts >= self._since)
        if self._until is not None:
            conditions.append(samples.c.ts < self._until)
        if self._metrics is not None:
            dialect = self._engine.dialect.name
            conditions.append(
                or_(*(_metric_value(dialect, m).is_not(None) for m in sorted(self._metrics)))
            )
        return (
            select(samples.c.ts, samples.c.metrics)
            .where(*conditions)
            .order_by(samples.c.ts)
            .limit(limit)
        )


def devices_matching(engine: Engine, labels: dict[str, str]) -> list[str]:
    """Ids of the devices whose labels include every one of ``labels`` (in id order)."""
    query = select(devices.c.id, devices.c.labels).where(devices.c.labels.is_not(None))
    matched = []
    with engine.connect() as connection:
        for device_id, stored in connection.execute(query.order_by(devices.c.id)):
            try:
                own = json.loads(stored)
            except ValueError:
                continue  # not written by the API: not a label set
            if isinstance(own, dict) and all(own.get(k) == v for k, v in labels.items()):
                matched.append(device_id)
    return matched


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


def storage_stats(engine: Engine) -> dict[str, Any]:
    """The database's size in bytes (SQLite: the file and its WAL; PostgreSQL:
    ``pg_database_size``) and the time of the oldest raw reading (None: none stored)."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            path = engine.url.database
            size = None
            if path and path != ":memory:":
                size = sum(
                    os.path.getsize(name) for name in (path, f"{path}-wal") if os.path.exists(name)
                )
        else:
            size = connection.execute(text("SELECT pg_database_size(current_database())")).scalar()
        # Device by device: one primary-key lookup each, where min(ts) would read the table.
        oldest = connection.execute(
            text(
                "SELECT min((SELECT min(s.ts) FROM samples s WHERE s.device_id = d.id))"
                " FROM devices d"
            )
        ).scalar()
    return {
        "database_bytes": None if size is None else int(size),
        "oldest_reading": None if oldest is None else float(oldest),
    }
