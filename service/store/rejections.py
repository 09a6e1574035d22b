"""Refused webhook requests: insert, prune (by age, count per client address, and count),
list newest first.

Rows never hold a body or a header value; the HTTP edge decides what goes in (`NewRejection`,
recorded by `service.http.rejections` and written in batches by `rejections_writer.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.paging import Page, SortKey, fetch_page
from service.store.tables import REJECTIONS, RejectionRow


@dataclass(frozen=True, slots=True)
class NewRejection:
    """One refused request, as recorded."""

    id: str
    received_at: datetime
    reason: str
    status: int
    path: str
    workspace: str | None
    client_address: str | None
    body_bytes: int | None
    body_sha256: str | None
    header_names: list[str]


# A listed rejection is what was recorded, nothing more.
StoredRejection = NewRejection


def _stored(row: RejectionRow) -> StoredRejection:
    return StoredRejection(
        id=row.id,
        received_at=row.received_at,
        reason=row.reason,
        status=row.status,
        path=row.path,
        workspace=row.workspace,
        client_address=row.client_address,
        body_bytes=row.body_bytes,
        body_sha256=row.body_sha256,
        header_names=list(row.header_names),
    )


@dataclass(frozen=True, slots=True)
class RejectionFilter:
    """Admin list filters; empty or None means "any"."""

    reasons: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None


async def insert_rejections(session: AsyncSession, rows: Sequence[NewRejection]) -> None:
    """Insert `rows` (one statement)."""
    if rows:
        await session.execute(sa.insert(REJECTIONS), [asdict(row) for row in rows])


async def prune_rejections(
    session: AsyncSession, *, before: datetime, keep: int, keep_per_address: int
) -> int:
    """Delete rows received before `before`, all but the newest `keep_per_address` of each
    client address, and all but the newest `keep`; how many."""
    deleted = await _delete(session, REJECTIONS.c.received_at < before)
    # Per address first, so one source flooding the log pushes out its own rows, not others'.
    crowded = await session.execute(
        sa.select(REJECTIONS.c.client_address)
        .group_by(REJECTIONS.c.client_address)
        .having(sa.func.count() > keep_per_address)
    )
    column = REJECTIONS.c.client_address
    for (address,) in crowded.all():
        # Requests without a client address share one allowance.
        among = column.is_(None) if address is None else column == address
        deleted += await _trim(session, among, keep_per_address)
    return deleted + await _trim(session, sa.true(), keep)


async def _trim(session: AsyncSession, among: sa.ColumnElement[bool], keep: int) -> int:
    # The sort key of the newest row past `keep`: it and everything older goes. Two plain
    # statements, as DELETE ... LIMIT/OFFSET is not portable.
    oldest_kept = (
        await session.execute(
            sa.select(REJECTIONS.c.received_at, REJECTIONS.c.id)
            .where(among)
            .order_by(REJECTIONS.c.received_at.desc(), REJECTIONS.c.id.desc())
            .offset(keep)
            .limit(1)
        )
    ).first()
    if oldest_kept is None:
        return 0
    at, last_id = oldest_kept
    older = sa.or_(
        REJECTIONS.c.received_at < at,
        sa.and_(REJECTIONS.c.received_at == at, REJECTIONS.c.id <= last_id),
    )
    return await _delete(session, sa.and_(among, older))


async def _delete(session: AsyncSession, condition: sa.ColumnElement[bool]) -> int:
    result = await session.execute(
        sa.delete(REJECTIONS).where(condition).returning(REJECTIONS.c.id)
    )
    return len(result.all())


async def list_rejections(
    session: AsyncSession, *, where: RejectionFilter, limit: int, cursor: SortKey | None
) -> Page[StoredRejection]:
    """Newest first by (received_at, id), `limit` rejections after `cursor`."""
    stmt = sa.select(RejectionRow)
    if where.reasons:
        stmt = stmt.where(RejectionRow.reason.in_(where.reasons))
    if where.since is not None:
        stmt = stmt.where(RejectionRow.received_at >= where.since)
    if where.until is not None:
        stmt = stmt.where(RejectionRow.received_at < where.until)
    page = await fetch_page(
        session,
        stmt,
        time_col=RejectionRow.received_at,
        id_col=RejectionRow.id,
        limit=limit,
        cursor=cursor,
    )
    return page.map(_stored)
