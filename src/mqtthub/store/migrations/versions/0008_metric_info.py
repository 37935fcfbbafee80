"""What firmware says about a metric besides its values: unit, display name, device class.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the metric_info table."""
    op.create_table(
        "metric_info",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("unit", sa.String(32), nullable=True),
        sa.Column("name", sa.String(128), nullable=True),
        sa.Column("device_class", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    """Drop the metric_info table."""
    op.drop_table("metric_info")
