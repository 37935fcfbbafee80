"""Alert rules, the alerts they raise with every transition, and the notification log.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add alert_rules, alerts, alert_events and notifications."""
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("condition", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(64), nullable=True),
        sa.Column("threshold", sa.Double, nullable=True),
        sa.Column("threshold_high", sa.Double, nullable=True),
        sa.Column("for_seconds", sa.Double, nullable=False),
        sa.Column("window_average", sa.Boolean, nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("labels", sa.Text, nullable=True),
        sa.Column("notify", sa.Text, nullable=False),
        sa.Column("repeat_seconds", sa.Double, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("rule_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("acknowledged_at", sa.Double, nullable=True),
        sa.Column("resolved_at", sa.Double, nullable=True),
        sa.Column("last_notified_at", sa.Double, nullable=True),
    )
    op.create_index("ix_alerts_state", "alerts", ["state"])
    op.create_index("ix_alerts_rule_device", "alerts", ["rule_id", "device_id"])
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_alert_events_alert", "alert_events", ["alert_id", "at"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_notifications_at", "notifications", ["at"])


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    for table in ("notifications", "alert_events", "alerts", "alert_rules"):
        op.drop_table(table)
