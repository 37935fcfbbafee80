"""Tasks: the time a person saw one (``seen_at``, the ``seen`` state).

A task now goes ``queued`` -> ``delivered`` -> ``seen`` -> ``done``. The state column is
a plain string, so ``seen`` needs no change to it; only the time is new.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add tasks.seen_at."""
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("seen_at", sa.Double, nullable=True))


def downgrade() -> None:
    """Drop tasks.seen_at (seen tasks become delivered, the state they were before)."""
    op.execute("UPDATE tasks SET state = 'delivered' WHERE state = 'seen'")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("seen_at")
