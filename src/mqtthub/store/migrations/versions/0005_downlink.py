"""Tasks to people, commands to devices, device MQTT credentials.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add tasks, commands and devices.mqtt_password_hash."""
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("mqtt_password_hash", sa.String(255), nullable=True))
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=True),
        sa.Column("delivered_at", sa.Double, nullable=True),
        sa.Column("done_at", sa.Double, nullable=True),
        sa.Column("publishes", sa.Integer, nullable=False),
    )
    op.create_index("ix_tasks_recipient_state", "tasks", ["recipient", "state"])
    op.create_table(
        "commands",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("deadline", sa.Double, nullable=False),
        sa.Column("replied_at", sa.Double, nullable=True),
        sa.Column("reply", sa.Text, nullable=True),
    )
    op.create_index("ix_commands_device_created", "commands", ["device_id", "created_at"])


def downgrade() -> None:
    """Drop the downlink tables."""
    op.drop_table("commands")
    op.drop_table("tasks")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("mqtt_password_hash")
