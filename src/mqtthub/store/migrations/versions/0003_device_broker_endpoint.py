"""The broker endpoint a device was provisioned with (for doctor's endpoint_mismatch).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add devices.broker_endpoint."""
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("broker_endpoint", sa.String(255), nullable=True))


def downgrade() -> None:
    """Drop devices.broker_endpoint."""
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("broker_endpoint")
