"""Jobs we submit ourselves (idempotency key, callback token, dataset, parameters, submission and
poll times; the LLMTune job id is empty until LLMTune answers), and follow-up inference runs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 02:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("llmtune_job_id", existing_type=sa.Text(), nullable=True)
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("callback_token", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("dataset", sa.Text(), nullable=True))
        batch.add_column(sa.Column("training_method", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("params", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("submit_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("next_poll_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("poll_failures", sa.Integer(), server_default="0", nullable=False)
        )
        batch.create_unique_constraint("uq_jobs_idempotency_key", ["idempotency_key"])
        batch.create_unique_constraint("uq_jobs_callback_token", ["callback_token"])
    op.create_table(
        "inference_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("prompt_index", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=True),
        sa.Column("route", sa.String(length=100), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name="fk_inference_runs_event_id_events",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_inference_runs"),
        sa.UniqueConstraint(
            "delivery_id", "prompt_index", name="uq_inference_runs_delivery_id_prompt_index"
        ),
    )
    op.create_index("ix_inference_runs_job_id", "inference_runs", ["job_id"])
    op.create_index("ix_inference_runs_event_id", "inference_runs", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_inference_runs_event_id", table_name="inference_runs")
    op.drop_index("ix_inference_runs_job_id", table_name="inference_runs")
    op.drop_table("inference_runs")
    # Jobs we submitted that LLMTune never accepted have no LLMTune id; the old schema cannot
    # hold them.
    op.execute("DELETE FROM jobs WHERE llmtune_job_id IS NULL")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_callback_token", type_="unique")
        batch.drop_constraint("uq_jobs_idempotency_key", type_="unique")
        for name in (
            "poll_failures",
            "next_poll_at",
            "last_polled_at",
            "submitted_at",
            "submit_error",
            "params",
            "training_method",
            "dataset",
            "callback_token",
            "idempotency_key",
        ):
            batch.drop_column(name)
        batch.alter_column("llmtune_job_id", existing_type=sa.Text(), nullable=False)
