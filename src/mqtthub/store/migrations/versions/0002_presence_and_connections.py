"""Presence reasons and events, learned heartbeat intervals, connection events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add presence and connection history."""
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("status_reason", sa.String(32), nullable=True))
        batch.add_column(sa.Column("heartbeat_interval", sa.Double, nullable=True))
        batch.add_column(sa.Column("heartbeat_timeout", sa.Double, nullable=True))
    op.create_table(
        "presence_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_presence_events_device_at", "presence_events", ["device_id", "at"])
    op.create_table(
        "connection_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=True),
        sa.Column("reason_code", sa.Integer, nullable=True),
        sa.Column("reason", sa.String(48), nullable=False),
        sa.Column("lasted", sa.Double, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_connection_events_at", "connection_events", ["at"])


def downgrade() -> None:
    """Remove presence and connection history."""
    op.drop_table("connection_events")
    op.drop_table("presence_events")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("heartbeat_timeout")
        batch.drop_column("heartbeat_interval")
        batch.drop_column("status_reason")
