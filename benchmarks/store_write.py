"""What does ``Store.write`` cost per message, for the readings layout in use and others?

Builds realistic batches (the throughput suite's sensor payloads: 7 values per message,
100 devices, received at 20,000 msg/s) through ``pipeline.parse_all``/``build_batch`` and
times ``Store.write`` batch after batch on a fresh database, for each candidate layout:

* ``narrow``: revision 0005's layout and write path, rebuilt here as the baseline: one
  row per value in ``readings`` (primary key device, metric, ts), ``executemany``.
* ``narrow-without-rowid`` (SQLite): the same in a ``WITHOUT ROWID`` table.
* ``narrow-copy`` (PostgreSQL): the same rows through ``COPY`` into a staging table and
  ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``.
* ``samples``: the store as it is (one row per device and time, values as JSON; on
  PostgreSQL ``COPY`` and ``unnest`` upserts).
* ``samples-executemany`` (PostgreSQL): samples, but the latest values and per-minute
  aggregates through ``executemany`` instead of one ``unnest`` statement.
* ``samples-jsonb`` (PostgreSQL): samples in a ``jsonb`` instead of a ``json`` column.

Everything but the readings step (devices, presence, dead letters) is the store's own code
in the same transaction; the candidates replace ``Store._samples``. Rounds interleave the
candidates and each figure is the median over rounds of a run's median batch, with its
ratio to ``narrow`` in the same round.

Usage: ``.venv/bin/python benchmarks/store_write.py [--sizes 2000,100] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from mqtt_clients import sensor_readings
from sqlalchemy import Connection, case, text
from sqlalchemy.dialects import postgresql, sqlite
from suite.databases import fresh_store

from mqtthub.pipeline import Batch, RawMessage, Sample, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store.database import Store
from mqtthub.store.samples import SampleWriter
from mqtthub.store.schema import latest_readings, readings_1m

T0 = 1_790_000_000.0
RATE = 20_000.0  # messages per second of receive time


def make_batches(size: int, count: int) -> list[Batch]:
    """``count`` batches of ``size`` sensor messages, one presence engine across them."""
    payloads = sensor_readings(size * count)
    presence = PresenceEngine()
    batches = []
    for b in range(count):
        raw = [
            RawMessage(topic.decode(), payload, 1, False, T0 + (b * size + i) / RATE)
            for i, (topic, payload) in zip(range(size), payloads, strict=False)
        ]
        parsed = parse_all(raw, prefix="bench", max_payload=65536)
        batches.append(build_batch(parsed, presence=presence))
    return batches


class NarrowWriter:
    """Revision 0005's readings step: one row per value, then per-value latest/minutes."""

    table = "narrow_readings"

    def __init__(self, dialect: str, *, without_rowid: bool = False, copy: bool = False) -> None:
        """Choose the variant; :meth:`create` makes its table."""
        self.dialect = dialect
        self.without_rowid = without_rowid
        self.copy = copy
        self.insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        mark = "?" if dialect == "sqlite" else "%s"
        self.sql = f"INSERT INTO {self.table} VALUES ({mark}, {mark}, {mark}, {mark})"  # noqa: S608
        self.sql += " ON CONFLICT DO NOTHING"
        # The narrow rows were built by the pipeline, outside Store.write: precomputed here.
        self.rows: dict[int, list[tuple[str, str, float, float]]] = {}

    def create(self, connection: Connection) -> None:
        """The narrow table of revision 0005."""
        connection.exec_driver_sql(
            f"CREATE TABLE {self.table} (device_id VARCHAR(64) NOT NULL, metric VARCHAR(64) "
            "NOT NULL, ts DOUBLE PRECISION NOT NULL, value DOUBLE PRECISION NOT NULL, "
            "PRIMARY KEY (device_id, metric, ts))"
            + (" WITHOUT ROWID" if self.without_rowid else "")
        )
        if self.copy:
            connection.exec_driver_sql(
                "CREATE TABLE narrow_stage (device_id VARCHAR(64), metric VARCHAR(64), "
                "ts DOUBLE PRECISION, value DOUBLE PRECISION)"
            )

    def prepare(self, batch: Batch) -> None:
        """Build the batch's narrow rows before the clock starts."""
        self.rows[id(batch.samples)] = batch.readings

    def write(self, connection: Connection, samples: Sequence[Sample]) -> None:
        """Insert the rows, then latest values and per-minute aggregates as 0005 did."""
        rows = self.rows[id(samples)]
        if self.copy:
            dbapi = connection.connection.dbapi_connection
            assert isinstance(dbapi, psycopg.Connection)
            with dbapi.cursor() as cursor:
                with cursor.copy("COPY narrow_stage FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                cursor.execute(
                    f"INSERT INTO {self.table} SELECT * FROM narrow_stage ON CONFLICT DO NOTHING"  # noqa: S608
                )
                cursor.execute("TRUNCATE narrow_stage")
        else:
            connection.exec_driver_sql(self.sql, rows)  # type: ignore[arg-type]
        connection.execute(self._latest(), _latest_rows(rows))
        connection.execute(self._minutes(), _minute_rows(rows))

    def _latest(self) -> Any:
        statement = self.insert(latest_readings)
        return statement.on_conflict_do_update(
            index_elements=[latest_readings.c.device_id, latest_readings.c.metric],
            set_={"ts": statement.excluded.ts, "value": statement.excluded.value},
            where=statement.excluded.ts >= latest_readings.c.ts,
        )

    def _minutes(self) -> Any:
        statement = self.insert(readings_1m)
        new, old = statement.excluded, readings_1m.c
        return statement.on_conflict_do_update(
            index_elements=[old.device_id, old.metric, old.minute],
            set_={
                "min": case((new.min < old.min, new.min), else_=old.min),
                "max": case((new.max > old.max, new.max), else_=old.max),
                "sum": old.sum + new.sum,
                "count": old.count + new.count,
            },
        )


def _latest_rows(rows: list[tuple[str, str, float, float]]) -> list[dict[str, Any]]:
    latest: dict[tuple[str, str], tuple[float, float]] = {}
    for device_id, metric, ts, value in rows:
        known = latest.get((device_id, metric))
        if known is None or ts >= known[0]:
            latest[(device_id, metric)] = (ts, value)
    return [{"device_id": d, "metric": m, "ts": t, "value": v} for (d, m), (t, v) in latest.items()]


def _minute_rows(rows: list[tuple[str, str, float, float]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, float], list[float]] = {}
    for device_id, metric, ts, value in rows:
        group = groups.setdefault((device_id, metric, ts - ts % 60), [value, value, 0.0, 0])
        group[0], group[1] = min(group[0], value), max(group[1], value)
        group[2] += value
        group[3] += 1
    names = ("min", "max", "sum", "count")
    return [
        {"device_id": d, "metric": m, "minute": minute, **dict(zip(names, g, strict=True))}
        for (d, m, minute), g in groups.items()
    ]


class ManyUpserts(SampleWriter):
    """Samples, with latest values and aggregates through ``executemany`` (PostgreSQL)."""

    def __init__(self, dialect: str) -> None:
        """Rewrite the two upserts to one VALUES row per parameter set."""
        super().__init__(dialect)
        self._latest = self._latest.replace(
            "SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::float8[], %s::float8[])",
            "VALUES (%s, %s, %s, %s)",
        )
        self._minutes = self._minutes.replace(
            "SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::float8[], %s::float8[], "
            "%s::float8[], %s::float8[], %s::int[])",
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        )

    def _upsert(self, connection: Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
        connection.exec_driver_sql(sql, sorted(rows))  # type: ignore[arg-type]


# name -> (dialects, build(store) -> the object put in place of store._samples, or None)
Build = Callable[[Store], Any]
CANDIDATES: dict[str, tuple[set[str], Build]] = {
    "narrow": ({"sqlite", "postgresql"}, lambda s: NarrowWriter(s.dialect)),
    "narrow-without-rowid": ({"sqlite"}, lambda s: NarrowWriter(s.dialect, without_rowid=True)),
    "narrow-copy": ({"postgresql"}, lambda s: NarrowWriter(s.dialect, copy=True)),
    "samples": ({"sqlite", "postgresql"}, lambda s: None),
    "samples-executemany": ({"postgresql"}, lambda s: ManyUpserts(s.dialect)),
    "samples-jsonb": ({"postgresql"}, lambda s: None),
}


def run(candidate: str, dialect: str, batches: list[Batch]) -> float:
    """Median microseconds per message of ``Store.write`` over ``batches``."""
    with fresh_store(dialect) as store:
        writer = CANDIDATES[candidate][1](store)
        with store.engine.begin() as connection:
            if isinstance(writer, NarrowWriter):
                writer.create(connection)
            if candidate == "samples-jsonb":
                connection.execute(text("DROP VIEW readings"))
                connection.execute(text("ALTER TABLE samples ALTER COLUMN metrics TYPE jsonb"))
        if writer is not None:
            store._samples = writer
        seconds = []
        for batch in batches:
            if isinstance(writer, NarrowWriter):
                writer.prepare(batch)
            started = time.perf_counter()
            store.write(batch)
            seconds.append(time.perf_counter() - started)
        with store.engine.connect() as connection:
            stored = connection.execute(text("SELECT sum(count) FROM readings_1m")).scalar_one()
    expected = sum(len(b.readings) for b in batches)
    if stored != expected:
        raise RuntimeError(f"{candidate}/{dialect}: {stored} values aggregated, not {expected}")
    return statistics.median(seconds) / len(batches[0].accepted) * 1e6


def main() -> None:
    """Run the rounds and print a Markdown table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,100", help="messages per batch")
    parser.add_argument("--messages", type=int, default=20_000, help="per run and size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    batches = {size: make_batches(size, max(1, args.messages // size)) for size in sizes}
    wanted = args.candidates.split(",")
    results: dict[tuple[str, int, str], list[float]] = {}
    ratios: dict[tuple[str, int, str], list[float]] = {}
    for round_ in range(args.rounds):
        for dialect in args.databases.split(","):
            for size in sizes:
                costs = {
                    name: run(name, dialect, batches[size])
                    for name in wanted
                    if dialect in CANDIDATES[name][0]
                }
                for name, cost in costs.items():
                    results.setdefault((dialect, size, name), []).append(cost)
                    ratios.setdefault((dialect, size, name), []).append(cost / costs["narrow"])
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    print("| database | batch | layout | µs/message (median) | runs | cost vs narrow |")
    print("|---|---|---|---|---|---|")
    for (dialect, size, name), costs in results.items():
        ratio = statistics.median(ratios[(dialect, size, name)])
        spread = f"{min(costs):.1f}-{max(costs):.1f}"
        print(
            f"| {dialect} | {size} | {name} | {statistics.median(costs):.1f} | {spread} "
            f"| {ratio:.2f} |"
        )
    if args.json:
        print(json.dumps({"|".join(map(str, k)): v for k, v in results.items()}))


if __name__ == "__main__":
    main()
