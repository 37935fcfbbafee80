"""Readings stored one row per device and time (``samples``); ``readings`` becomes a view.

Every (device_id, ts) of the old narrow ``readings`` table becomes one ``samples`` row
holding all its metrics as a JSON object; values are carried over exactly (converted in
Python, since SQLite's own JSON output keeps only 15 significant digits). ``readings``
stays readable as a view with the old columns. ``latest_readings`` and ``readings_1m``
do not change.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHUNK = 10_000
VIEWS = {
    "sqlite": (
        "CREATE VIEW readings AS SELECT s.device_id AS device_id, j.key AS metric, "
        "s.ts AS ts, j.value AS value FROM samples AS s, json_each(s.metrics) AS j"
    ),
    "postgresql": (
        "CREATE VIEW readings AS SELECT s.device_id AS device_id, "
        "CAST(j.key AS VARCHAR(64)) AS metric, s.ts AS ts, "
        "CAST(j.value AS DOUBLE PRECISION) AS value "
        "FROM samples AS s CROSS JOIN LATERAL json_each_text(s.metrics) AS j"
    ),
}


def upgrade() -> None:
    """Create ``samples`` from ``readings``, then replace the table by a view."""
    connection = op.get_bind()
    dialect = connection.dialect.name
    op.create_table(
        "samples",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("ts", sa.Double, primary_key=True),
        sa.Column("metrics", sa.Text().with_variant(sa.JSON(), "postgresql"), nullable=False),
        sqlite_with_rowid=False,
    )
    insert = sa.text("INSERT INTO samples (device_id, ts, metrics) VALUES (:d, :ts, :m)")
    chunk: list[dict[str, object]] = []
    for device_id, ts, metrics in _grouped(connection):
        chunk.append({"d": device_id, "ts": ts, "m": orjson.dumps(metrics).decode()})
        if len(chunk) >= CHUNK:
            connection.execute(insert, chunk)
            chunk = []
    if chunk:
        connection.execute(insert, chunk)
    op.drop_table("readings")
    op.execute(VIEWS[dialect])
    if dialect == "postgresql":
        # Statistics now, not when autovacuum gets to it: without them the planner may
        # prefer a bitmap scan and sort over the primary key's newest-first order.
        op.execute("ANALYZE samples")


def _grouped(connection: sa.Connection) -> Iterator[tuple[str, float, dict[str, float]]]:
    """The old readings as (device_id, ts, {metric: value}), streamed in key order."""
    rows = connection.execute(
        sa.text(
            "SELECT device_id, ts, metric, value FROM readings ORDER BY device_id, ts"
        ).execution_options(stream_results=True, yield_per=CHUNK)
    )
    key: tuple[str, float] | None = None
    metrics: dict[str, float] = {}
    for device_id, ts, metric, value in rows:
        if (device_id, ts) != key:
            if key is not None:
                yield key[0], key[1], metrics
            key, metrics = (device_id, ts), {}
        metrics[metric] = value
    if key is not None:
        yield key[0], key[1], metrics


def downgrade() -> None:
    """Bring back the narrow ``readings`` table, one row per value."""
    op.execute("DROP VIEW readings")
    op.create_table(
        "readings",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("ts", sa.Double, primary_key=True),
        sa.Column("value", sa.Double, nullable=False),
    )
    connection = op.get_bind()
    insert = sa.text("INSERT INTO readings (device_id, metric, ts, value) VALUES (:d, :m, :ts, :v)")
    rows = connection.execute(
        sa.text("SELECT device_id, ts, metrics FROM samples").execution_options(
            stream_results=True, yield_per=CHUNK
        )
    )
    chunk: list[dict[str, object]] = []
    for device_id, ts, stored in rows:
        metrics = stored if isinstance(stored, dict) else orjson.loads(stored)
        chunk.extend({"d": device_id, "m": m, "ts": ts, "v": v} for m, v in metrics.items())
        if len(chunk) >= CHUNK:
            connection.execute(insert, chunk)
            chunk = []
    if chunk:
        connection.execute(insert, chunk)
    op.drop_table("samples")
