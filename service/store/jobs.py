"""The jobs table: forward-only advancement from events, and admin queries.

Never read-then-write: `INSERT … ON CONFLICT DO NOTHING`, then an `UPDATE … WHERE rank < :new`
that only a forward move satisfies, then an `UPDATE` that only fills what is still empty. Two
racing events for one job therefore cannot move it backwards.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.events import Event
from service.ids import new_id
from service.jobs.state import RANK, Transition
from service.store.dialect import insert_for
from service.store.paging import Page, fetch_page
from service.store.tables import JOBS, JobRow


def _rank_of_status() -> sa.ColumnElement[int]:
    return sa.case(RANK, value=JOBS.c.status, else_=-1)


async def advance_job(
    session: AsyncSession, *, event: Event, transition: Transition, at: datetime
) -> None:
    """Create the event's job or move it forward; late events only fill missing fields."""
    assert event.job_id is not None  # noqa: S101 - callers pass lifecycle events with a job id
    when = event.occurred_at or at
    fields = {
        "base_model": event.model,
        "artifact": event.artifact,
        "deployment_id": event.deployment_id,
        "metrics": event.metrics,
        "error": event.error,
    }
    inserted = await session.execute(
        insert_for(session, JOBS)
        .values(
            id=new_id("job"),
            llmtune_job_id=event.job_id,
            status=transition.status,
            created_at=at,
            updated_at=at,
            **{transition.timestamp_field: when},
            **fields,
        )
        .on_conflict_do_nothing(index_elements=[JOBS.c.llmtune_job_id])
        .returning(JOBS.c.id)
    )
    if inserted.scalar_one_or_none() is not None:
        return
    # The event that moves the job forward also brings the newest metrics and error.
    forward = {name: value for name, value in fields.items() if value is not None}
    await session.execute(
        sa.update(JOBS)
        .where(JOBS.c.llmtune_job_id == event.job_id, _rank_of_status() < RANK[transition.status])
        .values(status=transition.status, updated_at=at, **forward)
    )
    fill = {name: _coalesce(name, value) for name, value in forward.items()}
    fill[transition.timestamp_field] = _coalesce(transition.timestamp_field, when)
    await session.execute(sa.update(JOBS).where(JOBS.c.llmtune_job_id == event.job_id).values(fill))


def _coalesce(name: str, value: object) -> sa.ColumnElement[object]:
    # The bind takes the column's type, so UTC times and JSON are stored as the column stores them.
    column = JOBS.c[name]
    return sa.func.coalesce(column, sa.bindparam(None, value, type_=column.type))


async def list_jobs(
    session: AsyncSession, *, status: str | None, limit: int, cursor: tuple[datetime, str] | None
) -> Page[JobRow]:
    """Newest first by (created_at, id)."""
    stmt = sa.select(JobRow)
    if status is not None:
        stmt = stmt.where(JobRow.status == status)
    return await fetch_page(
        session, stmt, time_col=JobRow.created_at, id_col=JobRow.id, limit=limit, cursor=cursor
    )


async def get_job(session: AsyncSession, job_id: str) -> JobRow | None:
    """One job by our own id, or None."""
    return await session.get(JobRow, job_id)
