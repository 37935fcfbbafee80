"""Device name and labels; per-minute reading aggregates for charts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add devices.name and devices.labels, and readings_1m filled from readings."""
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("name", sa.String(128), nullable=True))
        batch.add_column(sa.Column("labels", sa.Text, nullable=True))
    op.create_table(
        "readings_1m",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("minute", sa.Double, primary_key=True),
        sa.Column("min", sa.Double, nullable=False),
        sa.Column("max", sa.Double, nullable=False),
        sa.Column("sum", sa.Double, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    # SQLite's CAST truncates (and floor() is optional there); PostgreSQL's CAST rounds.
    sqlite = op.get_bind().dialect.name == "sqlite"
    minute = "(CAST(ts / 60 AS INTEGER) * 60)" if sqlite else "(floor(ts / 60) * 60)"
    columns = "device_id, metric, minute, min, max, sum, count"
    aggregates = f"device_id, metric, {minute}, min(value), max(value), sum(value), count(*)"
    select = f"SELECT {aggregates} FROM readings GROUP BY device_id, metric, {minute}"  # noqa: S608
    op.execute(f"INSERT INTO readings_1m ({columns}) {select}")


def downgrade() -> None:
    """Drop the chart aggregates, name and labels."""
    op.drop_table("readings_1m")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("labels")
        batch.drop_column("name")
