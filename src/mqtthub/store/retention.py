"""Retention: deleting old samples and aggregates in small steps (blocking; run by the
writer, one step per transaction, see ``mqtthub.housekeeping``).

Every step walks the devices (samples) or series (aggregates) in key order from where the
last one stopped and deletes by primary-key range, so no step scans a table and none
touches more than about ``batch_rows`` rows. A sweep records in ``rollup_state`` how far
back each resolution still reaches (``kept:raw``, ``kept:1m``, ...): the series query
reads it to fall back to a coarser resolution where finer data is gone.

Per-metric raw retention: a sample is deleted once every metric it may hold is past its
retention; until then, metrics past theirs are taken out of its JSON (``stripped:<metric>``
and ``stripped:*``, the metrics without an override, record how far that went).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, text

from mqtthub.store.rollups import get_state, set_state
from mqtthub.store.samples import metrics_of

OTHERS = "*"  # the class of metrics without an override of their own
DEVICES_PER_STEP = 500  # most devices or series one step visits


@dataclass(slots=True)
class Sweep:
    """A walk over devices (``samples``) or series (aggregates) deleting rows before
    ``cutoff``; ``after`` is the last key finished."""

    table: str
    column: str
    cutoff: float
    after: tuple[str, ...] = ("",)
    resume: bool = False  # True: ``after`` has rows left, visit it again first
    deleted: int = 0


@dataclass(slots=True)
class Strip:
    """A walk over devices taking expired metrics out of samples in [start, end).

    ``cutoffs``: metric -> the time before which it is dropped (None: kept forever),
    ``others``: the same for metrics not listed. ``device``: the last device visited,
    ``resume_at``: where to go on in it (None: it is finished).
    """

    start: float
    end: float
    cutoffs: Mapping[str, float | None]
    others: float | None
    device: str = ""
    resume_at: float | None = None
    changed: int = 0
    classes: dict[str, float] = field(default_factory=dict)  # progress to record when done


def sweep_step(engine: Engine, sweep: Sweep, *, batch_rows: int) -> bool:
    """Delete up to about ``batch_rows`` rows of ``sweep``; True when it reached the end
    (``kept:<name>`` is then recorded by the caller)."""
    per_series = sweep.table != "samples"
    with engine.begin() as connection:
        keys = _next_keys(
            connection, per_series=per_series, after=sweep.after, inclusive=sweep.resume
        )
        budget = batch_rows
        for key in keys:
            deleted, finished = _delete_before(connection, sweep, key, budget)
            sweep.deleted += deleted
            budget -= deleted
            sweep.after, sweep.resume = key, not finished
            if not finished:  # this key has more rows: the next step resumes with it
                return False
            if budget <= 0:
                return False
        return len(keys) < DEVICES_PER_STEP


def _next_keys(
    connection: Connection, *, per_series: bool, after: tuple[str, ...], inclusive: bool = False
) -> list[tuple[str, ...]]:
    """The next devices (or series) in key order after ``after`` (or from it)."""
    compare = ">=" if inclusive else ">"
    if per_series:
        d, m = (*after, "")[:2]
        rows = connection.execute(
            text(
                f"SELECT device_id, metric FROM latest_readings WHERE (device_id, metric) {compare}"  # noqa: S608 (names are constants)
                " (:d, :m) ORDER BY device_id, metric LIMIT :n"
            ),
            {"d": d, "m": m, "n": DEVICES_PER_STEP},
        )
        return [(str(a), str(b)) for a, b in rows]
    rows = connection.execute(
        text(f"SELECT id FROM devices WHERE id {compare} :d ORDER BY id LIMIT :n"),  # noqa: S608 (names are constants)
        {"d": after[0], "n": DEVICES_PER_STEP},
    )
    return [(str(row[0]),) for row in rows]


def _delete_before(
    connection: Connection, sweep: Sweep, key: tuple[str, ...], budget: int
) -> tuple[int, bool]:
    """Delete at most ``budget`` rows of one device or series before the cutoff; return
    (rows deleted, whether none are left)."""
    where = "device_id = :d" + (" AND metric = :m" if len(key) == 2 else "")
    params: dict[str, object] = {"d": key[0], "cut": sweep.cutoff, "n": max(0, budget - 1)}
    if len(key) == 2:
        params["m"] = key[1]
    table, column = sweep.table, sweep.column
    bound = connection.execute(
        text(
            f"SELECT {column} FROM {table} WHERE {where} AND {column} < :cut"  # noqa: S608 (names are constants)
            f" ORDER BY {column} LIMIT 1 OFFSET :n"
        ),
        params,
    ).scalar()
    if bound is None:  # fewer than the budget: delete them all
        result = connection.execute(
            text(f"DELETE FROM {table} WHERE {where} AND {column} < :cut"),  # noqa: S608
            params,
        )
        return result.rowcount, True
    result = connection.execute(
        text(f"DELETE FROM {table} WHERE {where} AND {column} <= :bound"),  # noqa: S608 (names are constants)
        {**params, "bound": bound},
    )
    return result.rowcount, False


def strip_step(engine: Engine, strip: Strip, *, batch_rows: int) -> bool:
    """Take expired metrics out of up to ``batch_rows`` samples; True when done."""
    with engine.begin() as connection:
        devices = _next_keys(
            connection,
            per_series=False,
            after=(strip.device,),
            inclusive=strip.resume_at is not None,
        )
        budget = batch_rows
        for (device_id,) in devices:
            resuming = device_id == strip.device and strip.resume_at is not None
            since = strip.resume_at if resuming and strip.resume_at is not None else strip.start
            rows = connection.execute(
                text(
                    "SELECT ts, metrics FROM samples WHERE device_id = :d AND ts >= :since"
                    " AND ts < :end ORDER BY ts LIMIT :n"
                ),
                {"d": device_id, "since": since, "end": strip.end, "n": budget},
            ).all()
            _strip_rows(connection, strip, device_id, rows)
            budget -= len(rows)
            if budget <= 0:  # the next step goes on after the last row read
                strip.device = device_id
                strip.resume_at = math.nextafter(float(rows[-1][0]), math.inf)
                return False
            strip.device, strip.resume_at = device_id, None
        return len(devices) < DEVICES_PER_STEP


def _strip_rows(connection: Connection, strip: Strip, device_id: str, rows: Sequence[Any]) -> None:
    updates: list[dict[str, object]] = []
    deletes: list[dict[str, object]] = []
    for ts, stored in rows:
        metrics = metrics_of(stored)
        kept = {m: v for m, v in metrics.items() if not _expired(strip, m, float(ts))}
        if len(kept) == len(metrics):
            continue
        key = {"d": device_id, "ts": ts}
        if kept:
            updates.append({**key, "metrics": orjson.dumps(kept).decode()})
        else:
            deletes.append(key)
    if updates:
        connection.execute(
            text("UPDATE samples SET metrics = :metrics WHERE device_id = :d AND ts = :ts"),
            updates,
        )
    if deletes:
        connection.execute(text("DELETE FROM samples WHERE device_id = :d AND ts = :ts"), deletes)
    strip.changed += len(updates) + len(deletes)


def _expired(strip: Strip, metric: str, ts: float) -> bool:
    cutoff = strip.cutoffs.get(metric, strip.others)
    return cutoff is not None and ts < cutoff


def plan_strip(
    engine: Engine,
    *,
    delete_before: float | None,
    default: float | None,
    cutoffs: Mapping[str, float | None],
) -> Strip | None:
    """The strip sweep the raw cutoffs call for now (None: no metric outlives another)."""
    classes = {OTHERS: default, **cutoffs}
    floor = delete_before if delete_before is not None else float("-inf")
    due = {name: c for name, c in classes.items() if c is not None and c > floor}
    if not due:
        return None
    with engine.connect() as connection:
        progress = {name: get_state(connection, f"stripped:{name}") for name in due}
    start = min(max(floor, p if p is not None else floor) for p in progress.values())
    end = max(due.values())
    if start >= end:
        return None
    start = max(start, 0.0)
    return Strip(start=start, end=end, cutoffs=cutoffs, others=default, classes=due)


def record(engine: Engine, values: Mapping[str, float]) -> None:
    """Store ``rollup_state`` values (how far back each resolution reaches)."""
    with engine.begin() as connection:
        for name, value in values.items():
            set_state(connection, name, value)
