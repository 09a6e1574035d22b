"""Deployment events that name a job are keyed per job: `sem:<type>:<job>:<deployment or model>`.

Stored keys are rewritten here rather than looked up under both forms at ingest, so the hot path
keeps one key and one unique-index probe. A row whose new key is already taken keeps its old key
(it can only be taken by a job-less event whose model id contains a colon; the unique index must
not fail the upgrade). Reversible: the downgrade strips the job again, except for the later rows
of a model that several jobs deployed, which the old form cannot tell apart (they keep the new
key; the old code would have called them duplicates of the first).

`dedup_tombstones` (0011) is left as it is: it is new in the same release as this revision, so it
is empty when an upgrade from an earlier release gets here, and purge writes it in the new form.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 01:30:00
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A copy of the key rule in service/events.py (`dedup_key`, `scoped_key`) as of this revision: a
# migration must keep doing what it did when it was written, whatever the code does later. The
# job id in `events.job_id` is already the key part (over 200 characters it was hashed).
DEPLOYMENT_EVENTS = ("model.deployed", "deployment.created", "deployment.deleted")
DEFAULT_WORKSPACE = "default"

EVENTS = sa.table(
    "events",
    sa.column("id", sa.String),
    sa.column("workspace", sa.String),
    sa.column("dedup_key", sa.Text),
    sa.column("type", sa.Text),
    sa.column("job_id", sa.Text),
    sa.column("received_at", sa.DateTime),
)


def _head(workspace: str, event_type: str) -> str:
    scope = "" if workspace == DEFAULT_WORKSPACE else f"ws:{workspace}:"
    return f"{scope}sem:{event_type}:"


def per_job_key(key: str, *, workspace: str, event_type: str, job_id: str) -> str | None:
    """The per-job form of a job-less semantic key, or None when `key` is not one."""
    head = _head(workspace, event_type)
    return head + job_id + ":" + key[len(head) :] if key.startswith(head) else None


def job_less_key(key: str, *, workspace: str, event_type: str, job_id: str) -> str | None:
    """The job-less form of a per-job semantic key, or None when `key` is not one."""
    head = _head(workspace, event_type) + job_id + ":"
    return _head(workspace, event_type) + key[len(head) :] if key.startswith(head) else None


def _rewrite(rule: Callable[..., str | None]) -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            EVENTS.c.id, EVENTS.c.workspace, EVENTS.c.dedup_key, EVENTS.c.type, EVENTS.c.job_id
        )
        .where(EVENTS.c.type.in_(DEPLOYMENT_EVENTS), EVENTS.c.job_id.is_not(None))
        # Oldest first: when two rows want one key, the first stored keeps it.
        .order_by(EVENTS.c.received_at, EVENTS.c.id)
    ).all()
    changes = []
    for row in rows:
        new = rule(row.dedup_key, workspace=row.workspace, event_type=row.type, job_id=row.job_id)
        if new is not None:
            changes.append({"p_id": row.id, "p_key": new})
    if not changes:
        return
    taken = EVENTS.alias("taken")
    in_use = sa.exists().where(taken.c.dedup_key == sa.bindparam("p_key"))
    connection.execute(
        EVENTS.update()
        .where(EVENTS.c.id == sa.bindparam("p_id"), ~in_use)
        .values(dedup_key=sa.bindparam("p_key")),
        changes,
    )


def upgrade() -> None:
    _rewrite(per_job_key)


def downgrade() -> None:
    _rewrite(job_less_key)
