"""The jobs table: admin queries. Events advance jobs in `store/batch.py`, never by
read-then-write: `INSERT … ON CONFLICT DO NOTHING`, then an `UPDATE … WHERE rank < :new` that only
a forward move satisfies, then an `UPDATE` that only fills what is still empty. Two racing events
for one job therefore cannot move it backwards.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.paging import Page, fetch_page
from service.store.tables import JobRow


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
