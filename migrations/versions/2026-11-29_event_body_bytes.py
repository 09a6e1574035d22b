"""Store each event's body size, so admin lists never load raw bodies to report it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("body_bytes", sa.Integer(), server_default="0", nullable=False))
    # length() of a BLOB is its size in bytes on SQLite; octet_length() says the same on bytea.
    size = "octet_length" if op.get_bind().dialect.name == "postgresql" else "length"
    op.execute(f"UPDATE events SET body_bytes = {size}(raw_body)")  # noqa: S608 - fixed names


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("body_bytes")
