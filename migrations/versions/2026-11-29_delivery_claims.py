"""What the dispatch worker needs: each delivery's job, store order and attempt budget, and a
record of every attempt.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 23:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQUENCE = "deliveries_seq_seq"


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("job_id", sa.Text(), nullable=True))
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("max_attempts", sa.Integer(), server_default="9", nullable=False)
        )
    # Rows already queued take their job from their event and their order from their age.
    op.execute(
        "UPDATE deliveries SET job_id = (SELECT events.job_id FROM events"
        " WHERE events.id = deliveries.event_id)"
    )
    op.execute(
        "UPDATE deliveries SET seq = (SELECT t.n FROM (SELECT id, ROW_NUMBER() OVER"
        " (ORDER BY created_at, id) AS n FROM deliveries) AS t WHERE t.id = deliveries.id)"
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch.create_index("ix_deliveries_job_id_route_seq", ["job_id", "route", "seq"])
        # SQLite's next seq is max(seq) + 1: an index led by seq answers that at once.
        batch.create_index("ix_deliveries_seq", ["seq"])
        batch.create_index("ix_deliveries_created_at_id", ["created_at", "id"])
    if postgresql:
        # Concurrent writers on PostgreSQL take their order from a sequence.
        op.execute(f"CREATE SEQUENCE {SEQUENCE} OWNED BY deliveries.seq")
        next_value = "coalesce((SELECT max(seq) FROM deliveries), 0) + 1"
        op.execute(f"SELECT setval('{SEQUENCE}', {next_value}, false)")
        op.execute(f"ALTER TABLE deliveries ALTER COLUMN seq SET DEFAULT nextval('{SEQUENCE}')")
    op.create_table(
        "delivery_attempts",
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name="fk_delivery_attempts_delivery_id_deliveries",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("delivery_id", "number", name="pk_delivery_attempts"),
    )


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries ALTER COLUMN seq DROP DEFAULT")
        op.execute(f"DROP SEQUENCE {SEQUENCE}")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_seq")
        batch.drop_index("ix_deliveries_created_at_id")
        batch.drop_index("ix_deliveries_job_id_route_seq")
        batch.drop_column("max_attempts")
        batch.drop_column("seq")
        batch.drop_column("job_id")
