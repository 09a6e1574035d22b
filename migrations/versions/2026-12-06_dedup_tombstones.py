"""Dedup keys of purged events (dedup_tombstones), so a replayed body stays a duplicate.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 01:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dedup_tombstones",
        sa.Column("dedup_key", sa.Text(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dedup_key", name="pk_dedup_tombstones"),
    )
    op.create_index(
        "ix_dedup_tombstones_received_at", "dedup_tombstones", ["received_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_dedup_tombstones_received_at", table_name="dedup_tombstones")
    op.drop_table("dedup_tombstones")
