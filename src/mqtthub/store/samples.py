"""The hot path of ingest: samples, latest values and per-minute aggregates.

A batch's readings arrive grouped as samples, ``(device_id, ts, {metric: value})``, and are
stored one row per device and time in ``samples`` (the metrics as one JSON object), so a
message of seven values costs one row instead of seven. ``latest_readings`` and
``readings_1m`` stay one row per metric; the batch is summarised in Python first, so each
(device, metric) and each (device, metric, minute) is written once per batch.

How each dialect writes (chosen by ``benchmarks/store_write.py``, see docs/PERFORMANCE.md):
SQLite runs ``executemany`` of prepared statements; PostgreSQL, where every statement is a
round trip, ``COPY`` into ``samples`` and one statement over arrays (``unnest``) for each
of the two other tables.

Redeliveries stay idempotent and the aggregates exact: all samples are inserted inside a
savepoint; if one (device, time) is already stored, the savepoint is rolled back and the
batch takes the exact path, where each sample is inserted, or merged into the stored one
(the metrics it did not have yet), and only the values really added are counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import reduce
from operator import add
from typing import Any, cast

import orjson
import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from mqtthub.messages import Reading
from mqtthub.pipeline import Sample

#: (device_id, metric) -> (ts, value) of the newest value in a batch.
Latest = dict[tuple[str, str], tuple[float, float]]
#: A ``latest_readings`` row: (device_id, metric, ts, value).
LatestRow = tuple[str, str, float, float]
#: A ``readings_1m`` row: (device_id, metric, minute, min, max, sum, count).
MinuteRow = tuple[str, str, float, float, float, float, int]

_SET_LATEST = (
    " ON CONFLICT (device_id, metric) DO UPDATE SET ts = excluded.ts, value = excluded.value"
    " WHERE excluded.ts >= latest_readings.ts"
)
_SET_MINUTE = (
    " ON CONFLICT (device_id, metric, minute) DO UPDATE SET"
    " min = CASE WHEN excluded.min < readings_1m.min THEN excluded.min ELSE readings_1m.min END,"
    " max = CASE WHEN excluded.max > readings_1m.max THEN excluded.max ELSE readings_1m.max END,"
    " sum = readings_1m.sum + excluded.sum, count = readings_1m.count + excluded.count"
)
_LATEST_COLUMNS = "INSERT INTO latest_readings (device_id, metric, ts, value) "
_MINUTE_COLUMNS = "INSERT INTO readings_1m (device_id, metric, minute, min, max, sum, count) "
_INSERT_SAMPLE = "INSERT INTO samples (device_id, ts, metrics) VALUES "
_INSERT_ONE = text(_INSERT_SAMPLE + "(:device_id, :ts, :metrics) ON CONFLICT DO NOTHING")
_MERGE_ONE = text("UPDATE samples SET metrics = :metrics WHERE device_id = :device_id AND ts = :ts")


def merge_samples(samples: Iterable[Sample]) -> dict[tuple[str, float], dict[str, float]]:
    """One entry per (device, ts); a metric seen twice keeps its first value.

    The batch's own dictionaries are never modified (a failed write is retried with it).
    """
    merged: dict[tuple[str, float], dict[str, float]] = {}
    for device_id, ts, metrics in samples:
        key = (device_id, ts)
        known = merged.get(key)
        if known is None:
            merged[key] = metrics
        else:
            merged[key] = {**metrics, **known}
    return merged


def distinct_samples(samples: Sequence[Sample]) -> list[Sample]:
    """``samples`` with one per (device, ts), as :func:`merge_samples` merges them (the
    usual batch has no two for one time and is returned as it is, as a list)."""
    times: dict[str, set[float]] = {}  # no tuple per sample: fewer objects for the GC
    for device_id, ts, _ in samples:
        seen = times.get(device_id)
        if seen is None:
            times[device_id] = {ts}
        else:
            seen.add(ts)
    if sum(map(len, times.values())) == len(samples):
        return list(samples)
    return [(device_id, ts, metrics) for (device_id, ts), metrics in merge_samples(samples).items()]


def summary_rows(samples: Sequence[Sample]) -> tuple[list[LatestRow], list[MinuteRow]]:
    """The rows for ``latest_readings`` and ``readings_1m`` from distinct samples.

    The newest value per (device, metric) (of equal times, the later sample's), and per
    (device, metric, minute) min, max, sum (added in sample order) and count. One pass over
    the samples groups them by device and minute and remembers each device's newest
    sample: when all of a device's samples carry the same metrics (the usual case) its
    newest values are that sample's; otherwise they are found metric by metric. The
    minutes are then reduced a metric at a time.
    """
    groups: dict[tuple[str, float], list[dict[str, float]]] = {}
    # device -> [ts of its newest sample, that sample's metrics, same metrics in all]
    newest: dict[str, list[Any]] = {}
    for device_id, ts, metrics in samples:
        key = (device_id, ts - ts % 60)
        group = groups.get(key)
        if group is None:
            groups[key] = [metrics]
        else:
            group.append(metrics)
        known = newest.get(device_id)
        if known is None:
            newest[device_id] = [ts, metrics, True]
            continue
        if known[2] and metrics.keys() != known[1].keys():
            known[2] = False
        if ts >= known[0]:
            known[0] = ts
            known[1] = metrics
    latest: list[LatestRow] = [
        (device_id, metric, ts, value)
        for device_id, (ts, metrics, same) in newest.items()
        if same
        for metric, value in metrics.items()
    ]
    mixed = {device_id for device_id, (_, _, same) in newest.items() if not same}
    if mixed:
        latest.extend(_latest_metric_by_metric(samples, mixed))
    return latest, _minute_rows(groups)


def _latest_metric_by_metric(samples: Sequence[Sample], devices: set[str]) -> list[LatestRow]:
    newest: Latest = {}
    for device_id, ts, metrics in samples:
        if device_id in devices:
            for metric, value in metrics.items():
                known = newest.get((device_id, metric))
                if known is None or ts >= known[0]:
                    newest[(device_id, metric)] = (ts, value)
    return [(device_id, metric, ts, value) for (device_id, metric), (ts, value) in newest.items()]


def _minute_rows(groups: dict[tuple[str, float], list[dict[str, float]]]) -> list[MinuteRow]:
    rows: list[MinuteRow] = []
    for (device_id, minute), group in groups.items():
        first = group[0]
        if len(group) == 1:
            rows.extend((device_id, m, minute, v, v, v, 1) for m, v in first.items())
            continue
        names = first.keys()
        columns: dict[str, list[float]]
        if all(metrics.keys() == names for metrics in group):  # the same metrics each time
            columns = {metric: [metrics[metric] for metrics in group] for metric in names}
        else:
            columns = {}
            for metrics in group:
                for metric, value in metrics.items():
                    columns.setdefault(metric, []).append(value)
        for metric, column in columns.items():
            total = reduce(add, column)  # in sample order, as the values were added before
            rows.append((device_id, metric, minute, min(column), max(column), total, len(column)))
    return rows


def metrics_of(stored: Any) -> dict[str, float]:
    """A stored ``samples.metrics`` as a dict (SQLite gives the JSON text, psycopg a dict)."""
    return cast(dict[str, float], stored if isinstance(stored, dict) else orjson.loads(stored))


class SampleWriter:
    """Writes samples and what follows from them, inside the caller's transaction."""

    def __init__(self, dialect: str) -> None:
        """Prepare the statements for ``dialect`` (``sqlite`` or ``postgresql``)."""
        self.dialect = dialect
        if dialect == "sqlite":
            self._latest = _LATEST_COLUMNS + "VALUES (?, ?, ?, ?)" + _SET_LATEST
            self._minutes = _MINUTE_COLUMNS + "VALUES (?, ?, ?, ?, ?, ?, ?)" + _SET_MINUTE
            self._existing = text("SELECT metrics FROM samples WHERE device_id = :d AND ts = :ts")
        else:
            arrays = "SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::float8[], "
            self._latest = _LATEST_COLUMNS + arrays + "%s::float8[])" + _SET_LATEST
            self._minutes = (
                _MINUTE_COLUMNS
                + arrays
                + "%s::float8[], %s::float8[], %s::float8[], %s::int[])"
                + _SET_MINUTE
            )
            self._existing = text(
                "SELECT metrics FROM samples WHERE device_id = :d AND ts = :ts FOR UPDATE"
            )

    def write(self, connection: Connection, samples: Sequence[Sample]) -> None:
        """Store ``samples``; values already stored (redeliveries) change nothing."""
        rows = distinct_samples(samples)
        if not rows:
            return
        if not self._insert_all(connection, rows):
            rows = self._insert_exactly(connection, rows)
        latest, minutes = summary_rows(rows)
        if latest:
            self._upsert(connection, self._latest, latest)
            self._upsert(connection, self._minutes, minutes)

    def _insert_all(self, connection: Connection, rows: list[Sample]) -> bool:
        """Insert every sample at once; False (and nothing written) if one already exists."""
        if self.dialect == "sqlite":
            dbapi = connection.connection.dbapi_connection
            assert dbapi is not None
            if not dbapi.in_transaction:  # pysqlite opens its transaction lazily
                connection.exec_driver_sql("BEGIN")
            try:
                with connection.begin_nested():
                    connection.exec_driver_sql(
                        _INSERT_SAMPLE + "(?, ?, ?)",
                        [(d, ts, orjson.dumps(m).decode()) for d, ts, m in rows],
                    )
            except IntegrityError:
                return False
            return True
        try:
            with connection.begin_nested():
                copy_samples(connection, rows)
        except psycopg.errors.UniqueViolation:
            return False
        return True

    def _insert_exactly(self, connection: Connection, rows: list[Sample]) -> list[Sample]:
        """Insert or merge sample by sample; return what was really added."""
        added: list[Sample] = []
        for device_id, ts, metrics in rows:
            key = {"device_id": device_id, "ts": ts}
            inserted = connection.execute(
                _INSERT_ONE, {**key, "metrics": orjson.dumps(metrics).decode()}
            ).rowcount
            if inserted:
                added.append((device_id, ts, metrics))
                continue
            stored = metrics_of(
                connection.execute(self._existing, {"d": device_id, "ts": ts}).one()[0]
            )
            new = {metric: value for metric, value in metrics.items() if metric not in stored}
            if new:
                connection.execute(
                    _MERGE_ONE, {**key, "metrics": orjson.dumps({**stored, **new}).decode()}
                )
                added.append((device_id, ts, new))
        return added

    def _upsert(self, connection: Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self.dialect == "sqlite":
            connection.exec_driver_sql(sql, rows)
        else:
            # Sorted, so that two processes sharing the database lock rows in the same order.
            columns = zip(*sorted(rows), strict=True)
            connection.exec_driver_sql(sql, tuple(list(column) for column in columns))


def copy_samples(connection: Connection, rows: Iterable[Sample]) -> None:
    """``COPY`` rows into PostgreSQL's ``samples`` (fails as a whole on a duplicate key)."""
    dbapi = connection.connection.dbapi_connection
    assert isinstance(dbapi, psycopg.Connection)
    with (
        dbapi.cursor() as cursor,
        cursor.copy("COPY samples (device_id, ts, metrics) FROM STDIN") as copy,
    ):
        for device_id, ts, metrics in rows:
            copy.write_row((device_id, ts, orjson.dumps(metrics).decode()))


_FIND_SAMPLES = "SELECT metrics FROM samples WHERE device_id = :d AND ts >= :since AND "
_HAS_SAMPLE_SQLITE = text(_FIND_SAMPLES + "json_extract(metrics, :key) = :value")
_HAS_SAMPLE_POSTGRESQL = text(_FIND_SAMPLES + "CAST(metrics ->> :key AS DOUBLE PRECISION) = :value")


def key_of(dialect: str, metric: str) -> str:
    """How to name ``metric`` inside ``samples.metrics``: a JSON path on SQLite, the key on
    PostgreSQL (metric names never contain a quote: see ``messages.METRIC_PATTERN``)."""
    return f'$."{metric}"' if dialect == "sqlite" else metric


def has_sample(
    connection: Connection, dialect: str, device_id: str, readings: Sequence[Reading], since: float
) -> bool:
    """True when one sample at or after ``since`` holds every one of ``readings``."""
    metric, value, _ = readings[0]
    query = _HAS_SAMPLE_SQLITE if dialect == "sqlite" else _HAS_SAMPLE_POSTGRESQL
    params = {"d": device_id, "since": since, "value": value, "key": key_of(dialect, metric)}
    for (stored,) in connection.execute(query, params):
        metrics = metrics_of(stored)
        if all(metrics.get(m) == v for m, v, _ in readings):
            return True
    return False
