"""A bounded record of refused webhook requests (reason, size, client, header names; no body).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 02:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_rejections",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=200), nullable=False),
        sa.Column("workspace", sa.String(length=40), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("body_bytes", sa.Integer(), nullable=True),
        sa.Column("body_sha256", sa.String(length=16), nullable=True),
        sa.Column("header_names", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_rejections"),
    )
    op.create_index(
        "ix_webhook_rejections_received_at_id",
        "webhook_rejections",
        ["received_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_rejections_received_at_id", table_name="webhook_rejections")
    op.drop_table("webhook_rejections")
