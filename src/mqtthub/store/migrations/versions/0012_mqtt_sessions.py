"""MQTT sessions of ``serve``: what may be unacknowledged at the broker, last connection.

One row per client id: the (packet id, fingerprint) pairs of the QoS 1 messages its last
batches committed whose PUBACK may not have reached the broker, so a redelivery without
the DUP flag (rumqttd, Aedes) is not stored twice, and when the client id was last
connected, so a restart that finds no session can say it was lost (issue 16).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create mqtt_sessions."""
    op.create_table(
        "mqtt_sessions",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("unacked", sa.LargeBinary, nullable=True),
        sa.Column("unacked_at", sa.Double, nullable=True),
        sa.Column("connected_at", sa.Double, nullable=True),
    )


def downgrade() -> None:
    """Drop mqtt_sessions."""
    op.drop_table("mqtt_sessions")
