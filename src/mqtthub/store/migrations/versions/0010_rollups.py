"""Hourly and daily rollups, their state, and late per-minute data to re-roll.

``readings_1h`` and ``readings_1d`` are shaped like ``readings_1m``. Triggers on
``readings_1m`` note every (device, metric, hour) that receives data for an hour already
rolled up (before ``rollup_state['rolled:1h']``) in ``rollup_pending``, so that bucket is
recomputed: the rollups stay exact when a device sends old readings late. On PostgreSQL
the trigger is per statement (one per ingest batch) and takes a shared advisory lock that
the rollup takes exclusively, so a late write racing a rollup from another worker is
either seen by the rollup or noted as pending.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_SQLITE_TRIGGER = """
CREATE TRIGGER readings_1m_late_{name} AFTER {event} ON readings_1m
WHEN NEW.minute < (SELECT value FROM rollup_state WHERE name = 'rolled:1h')
BEGIN
  INSERT INTO rollup_pending (device_id, metric, hour)
  VALUES (NEW.device_id, NEW.metric, NEW.minute - NEW.minute % 3600)
  ON CONFLICT DO NOTHING;
END
"""

_POSTGRESQL_FUNCTION = """
CREATE FUNCTION mqtthub_late_minutes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  rolled double precision;
BEGIN
  PERFORM pg_advisory_xact_lock_shared(28019, 1);  -- mqtthub.store.locks.ROLLUPS
  SELECT value INTO rolled FROM rollup_state WHERE name = 'rolled:1h';
  IF rolled IS NOT NULL THEN
    INSERT INTO rollup_pending (device_id, metric, hour)
    SELECT DISTINCT device_id, metric, floor(minute / 3600) * 3600
    FROM changed WHERE minute < rolled
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END
$$
"""

_POSTGRESQL_TRIGGER = """
CREATE TRIGGER readings_1m_late_{name} AFTER {event} ON readings_1m
REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION mqtthub_late_minutes()
"""


def _rollup_table(name: str, time_column: str) -> None:
    op.create_table(
        name,
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column(time_column, sa.Double, primary_key=True),
        sa.Column("min", sa.Double, nullable=False),
        sa.Column("max", sa.Double, nullable=False),
        sa.Column("sum", sa.Double, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )


def upgrade() -> None:
    """Add readings_1h, readings_1d, rollup_state, rollup_pending and the triggers."""
    _rollup_table("readings_1h", "hour")
    _rollup_table("readings_1d", "day")
    op.create_table(
        "rollup_state",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("value", sa.Double, nullable=False),
    )
    op.create_table(
        "rollup_pending",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("hour", sa.Double, primary_key=True),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRESQL_FUNCTION)
        for event in ("INSERT", "UPDATE"):
            op.execute(_POSTGRESQL_TRIGGER.format(name=event.lower(), event=event))
    else:
        for event in ("INSERT", "UPDATE"):
            op.execute(_SQLITE_TRIGGER.format(name=event.lower(), event=event))


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    for event in ("insert", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS readings_1m_late_{event}" + _on_table())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS mqtthub_late_minutes()")
    for table in ("rollup_pending", "rollup_state", "readings_1d", "readings_1h"):
        op.drop_table(table)


def _on_table() -> str:
    return " ON readings_1m" if op.get_bind().dialect.name == "postgresql" else ""
