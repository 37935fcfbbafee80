"""Hourly and daily rollups of the per-minute aggregates (blocking; run by the writer).

``readings_1h`` is built from ``readings_1m`` and ``readings_1d`` from ``readings_1h``, for
closed hours and days only, a few series per transaction: each step recomputes its
buckets from the finer rows and upserts them, so a step done twice changes nothing.

Where rolling stands lives in ``rollup_state``:

* ``rolled:<level>``: buckets before it are rolled up or being rolled up. It moves forward
  *before* a range is rolled, and the triggers of migration 0010 note every later write
  of per-minute data before ``rolled:1h`` in ``rollup_pending``; :func:`reroll_pending`
  recomputes those buckets (and their days), so late data always reaches the rollups.
* ``done:<level>``: buckets before it are complete; the series query reads the rollup
  before it and finer rows after it.

Every transaction here first takes the rollup lock (on PostgreSQL an advisory lock the
late-data trigger takes shared), so a late write from another worker racing a rollup is
either read by it or noted as pending once it commits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

from mqtthub.retention import DAY, HOUR, MINUTE
from mqtthub.store import locks

MAX_SPAN = {"1h": DAY, "1d": 30 * DAY}  # most time one pass over the series rolls up


@dataclass(frozen=True, slots=True)
class Level:
    """One rollup: ``target`` rows of ``width`` seconds built from ``source`` rows."""

    name: str
    target: str
    column: str
    width: float
    source: str
    source_column: str
    source_width: float


LEVELS = (
    Level("1h", "readings_1h", "hour", HOUR, "readings_1m", "minute", MINUTE),
    Level("1d", "readings_1d", "day", DAY, "readings_1h", "hour", HOUR),
)
HOURLY, DAILY = LEVELS


@dataclass(slots=True)
class RollupRun:
    """A range being rolled up, series by series: [start, end) and the last series done."""

    level: Level
    start: float
    end: float
    after: tuple[str, str] = ("", "")


def lock(connection: Connection) -> None:
    """Take the rollup lock until the transaction ends (see the module's docstring)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, %s)", locks.ROLLUPS)


def get_state(connection: Connection, name: str) -> float | None:
    """One value of ``rollup_state`` (None when never set)."""
    value = connection.execute(
        text("SELECT value FROM rollup_state WHERE name = :name"), {"name": name}
    ).scalar()
    return None if value is None else float(value)


def set_state(connection: Connection, name: str, value: float) -> None:
    """Set one value of ``rollup_state``."""
    connection.execute(
        text(
            "INSERT INTO rollup_state (name, value) VALUES (:name, :value)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
        ),
        {"name": name, "value": value},
    )


def read_states(engine: Engine) -> dict[str, float]:
    """Every value of ``rollup_state``."""
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT name, value FROM rollup_state"))
        return {name: float(value) for name, value in rows}


def _bucket(dialect: str, column: str, width: float) -> str:
    """SQL for the start of the ``width``-second bucket holding ``column`` (times > 0)."""
    if dialect == "sqlite":
        return f"CAST({column} / {width:.0f} AS INTEGER) * {width:.1f}"
    return f"floor({column} / {width:.1f}) * {width:.1f}"


def _upsert_sql(level: Level, dialect: str, source_rows: str) -> str:
    """``INSERT ... SELECT`` of ``level``'s buckets from ``source_rows`` (aliased ``r``)."""
    bucket = _bucket(dialect, f"r.{level.source_column}", level.width)
    return (
        f"INSERT INTO {level.target} (device_id, metric, {level.column}, min, max, sum, count)"
        f" SELECT r.device_id, r.metric, {bucket}, min(r.min), max(r.max), sum(r.sum),"
        f" sum(r.count) {source_rows}"
        f" GROUP BY r.device_id, r.metric, {bucket}"
        f" ON CONFLICT (device_id, metric, {level.column}) DO UPDATE SET min = excluded.min,"
        " max = excluded.max, sum = excluded.sum, count = excluded.count"
    )


def start_run(engine: Engine, level: Level, *, now: float) -> RollupRun | None:
    """Begin rolling up the next closed range of ``level`` (None: nothing to do yet).

    Moves ``rolled:<level>`` to the range's end first, so late data written to the range
    while it is rolled is noted as pending (see the module's docstring).
    """
    with engine.begin() as connection:
        lock(connection)
        end = math.floor(now / level.width) * level.width
        if level is DAILY:  # whole days of complete hours only
            hours_done = get_state(connection, f"done:{HOURLY.name}")
            end = min(end, math.floor((hours_done or 0.0) / DAY) * DAY)
        start = get_state(connection, f"done:{level.name}")
        if start is None:
            start = _oldest_bucket(connection, level)
            if start is None or start >= end:  # nothing stored yet: start from here
                start = max(end, 0.0)
                set_state(connection, f"rolled:{level.name}", start)
                set_state(connection, f"done:{level.name}", start)
                return None
        end = min(end, start + MAX_SPAN[level.name])
        if end <= start:
            return None
        set_state(connection, f"rolled:{level.name}", end)
        return RollupRun(level, start, end)


def _oldest_bucket(connection: Connection, level: Level) -> float | None:
    """The start of the bucket holding the oldest source row, found series by series
    (one primary-key lookup each, where ``min`` over the table would read all of it)."""
    column = level.source_column
    oldest = connection.execute(
        text(
            f"SELECT min((SELECT min(r.{column}) FROM {level.source} r"  # noqa: S608 (names are constants)
            " WHERE r.device_id = s.device_id AND r.metric = s.metric))"
            " FROM latest_readings s"
        )
    ).scalar()
    return None if oldest is None else math.floor(float(oldest) / level.width) * level.width


def roll_step(engine: Engine, run: RollupRun, *, batch_rows: int) -> bool:
    """Roll up the next few series of ``run`` (about ``batch_rows`` source rows); True
    when the range is done for every series (``done:<level>`` then moves to its end)."""
    level = run.level
    per_series = max(1, round((run.end - run.start) / level.source_width))
    count = max(1, batch_rows // per_series)
    with engine.begin() as connection:
        lock(connection)
        keys = connection.execute(
            text(
                "SELECT device_id, metric FROM latest_readings"
                " WHERE (device_id, metric) > (:d, :m) ORDER BY device_id, metric LIMIT :n"
            ),
            {"d": run.after[0], "m": run.after[1], "n": count},
        ).all()
        if not keys:
            set_state(connection, f"done:{level.name}", run.end)
            return True
        last = (str(keys[-1][0]), str(keys[-1][1]))
        # CROSS JOIN: SQLite keeps the few series outside and looks their rows up by key.
        source_rows = (
            "FROM (SELECT device_id, metric FROM latest_readings"  # noqa: S608 (names are constants)
            " WHERE (device_id, metric) > (:d, :m) AND (device_id, metric) <= (:ld, :lm)) s"
            f" CROSS JOIN {level.source} r"
            " WHERE r.device_id = s.device_id AND r.metric = s.metric"
            f" AND r.{level.source_column} >= :start AND r.{level.source_column} < :end"
        )
        connection.execute(
            text(_upsert_sql(level, connection.dialect.name, source_rows)),
            {
                "d": run.after[0],
                "m": run.after[1],
                "ld": last[0],
                "lm": last[1],
                "start": run.start,
                "end": run.end,
            },
        )
        run.after = last
        return False


def reroll_pending(engine: Engine, *, batch_rows: int, keep_1m_from: float | None) -> int:
    """Recompute the rollups of up to ``batch_rows // 60`` buckets noted as pending (late
    per-minute data); returns how many were taken (0: none left).

    An hour whose per-minute rows retention has begun to delete (before
    ``keep_1m_from``) is not recomputed: its late rows are about to go too.
    """
    with engine.begin() as connection:
        lock(connection)
        pending = connection.execute(
            text(
                "SELECT device_id, metric, hour FROM rollup_pending"
                " ORDER BY device_id, metric, hour LIMIT :n"
            ),
            {"n": max(1, batch_rows // 60)},
        ).all()
        if not pending:
            return 0
        keys = [{"d": d, "m": m, "h": float(h)} for d, m, h in pending]
        connection.execute(
            text("DELETE FROM rollup_pending WHERE device_id = :d AND metric = :m AND hour = :h"),
            keys,
        )
        kept = [key for key in keys if keep_1m_from is None or key["h"] >= keep_1m_from]
        if kept:
            _recompute(connection, HOURLY, kept, width=HOUR)
        days_rolled = get_state(connection, f"rolled:{DAILY.name}")
        if kept and days_rolled is not None:
            days = {
                (k["d"], k["m"], math.floor(k["h"] / DAY) * DAY)
                for k in kept
                if k["h"] < days_rolled
            }
            if days:
                day_keys = [{"d": d, "m": m, "h": h} for d, m, h in sorted(days)]
                _recompute(connection, DAILY, day_keys, width=DAY)
        return len(keys)


def _recompute(
    connection: Connection, level: Level, keys: list[dict[str, Any]], width: float
) -> None:
    """Recompute one bucket per key (``d``, ``m``, ``h``) of ``level`` from its source."""
    column = level.source_column
    source_rows = (
        f"FROM {level.source} r WHERE r.device_id = :d AND r.metric = :m"
        f" AND r.{column} >= :h AND r.{column} < :h + {width:.1f}"
    )
    connection.execute(text(_upsert_sql(level, connection.dialect.name, source_rows)), keys)
