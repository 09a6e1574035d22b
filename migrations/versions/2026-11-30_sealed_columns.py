"""Encryption at rest: which key sealed a row's sensitive columns (`sealed_with`, NULL for rows
kept in clear), and the registry of keys that have sealed data, each with its canary.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 05:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("sealed_with", sa.String(length=16), nullable=True))
    with op.batch_alter_table("inference_runs") as batch:
        batch.add_column(sa.Column("sealed_with", sa.String(length=16), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("sealed_with", sa.String(length=16), nullable=True))
    op.create_table(
        "encryption_keys",
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("canary", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_encryption_keys"),
    )


def downgrade() -> None:
    op.drop_table("encryption_keys")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("sealed_with")
    with op.batch_alter_table("inference_runs") as batch:
        batch.drop_column("sealed_with")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("sealed_with")
