"""Scale-out: presence decided by the database, and a row per running worker.

``devices.status_ts`` is the time of the event that decided the device's status (the
device's own ``ts`` for a timed status message, else when it was received), so an older
message that another worker handles later cannot roll the status back;
``devices.last_heartbeat`` lets any worker learn the heartbeat interval. ``workers`` holds
each running ``serve`` process's counters, for ``/api/stats`` and ``/metrics`` across all
of them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add devices.status_ts, devices.last_heartbeat and the workers table."""
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("status_ts", sa.Double, nullable=True))
        batch.add_column(sa.Column("last_heartbeat", sa.Double, nullable=True))
    op.create_table(
        "workers",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("leader", sa.Boolean, nullable=False),
        sa.Column("stats", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_table("workers")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("last_heartbeat")
        batch.drop_column("status_ts")
