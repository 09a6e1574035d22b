"""The events table: the rows ingest stores (`NewEvent`; written by `store/batch.py`), and
keyset queries for the admin API and replays. Reads answer in frozen values (`StoredEvent`,
`OpenedEvent` with the body already opened), never in ORM rows.

Functions take the caller's session and never commit: the unit of work (the ingest writer, an
admin request) owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from service.decision import Decision
from service.events import Event
from service.store.paging import Page, fetch_page
from service.store.sealing import Sealer, open_body, open_headers
from service.store.tables import EVENTS, EventRow


@dataclass(frozen=True, slots=True)
class NewEvent:
    """Everything the writer stores for one delivery, with what ingest decided it does if new."""

    id: str
    source: str
    workspace: str
    event: Event
    raw_body: bytes
    headers: list[list[str]]
    verified: bool
    received_at: datetime
    decision: Decision
    # The storing request's trace context, kept on its deliveries (see service/tracing.py).
    trace_parent: str | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A stored event as listed: what it is and how it arrived, without its body."""

    id: str
    type: str
    source: str
    workspace: str
    job_id: str | None
    external_id: str | None
    dedup_key: str
    received_at: datetime
    occurred_at: datetime | None
    verified: bool
    is_test: bool
    duplicate_count: int
    last_duplicate_at: datetime | None
    body_bytes: int


@dataclass(frozen=True, slots=True)
class OpenedEvent:
    """A stored event with its exact raw body and headers, in clear."""

    event: StoredEvent
    raw_body: bytes
    headers: list[list[str]]


def stored_event(row: EventRow) -> StoredEvent:
    """The plain value of an events row (its body is neither read nor opened)."""
    return StoredEvent(
        id=row.id,
        type=row.type,
        source=row.source,
        workspace=row.workspace,
        job_id=row.job_id,
        external_id=row.external_id,
        dedup_key=row.dedup_key,
        received_at=row.received_at,
        occurred_at=row.occurred_at,
        verified=row.verified,
        is_test=row.is_test,
        duplicate_count=row.duplicate_count,
        last_duplicate_at=row.last_duplicate_at,
        body_bytes=row.body_bytes,
    )


# A summary needs no body, and a body can be large.
_NO_BODY = defer(EventRow.raw_body, raiseload=True)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Admin list filters; None means "any"."""

    type: str | None = None
    types: tuple[str, ...] = ()  # any of these (with `type`, both must hold)
    job_id: str | None = None
    workspace: str | None = None
    duplicate: bool | None = None
    test: bool | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(stmt: sa.Select[EventRow], where: EventFilter) -> sa.Select[EventRow]:
    if where.type is not None:
        stmt = stmt.where(EventRow.type == where.type)
    if where.types:
        stmt = stmt.where(EventRow.type.in_(where.types))
    if where.job_id is not None:
        stmt = stmt.where(EventRow.job_id == where.job_id)
    if where.workspace is not None:
        stmt = stmt.where(EventRow.workspace == where.workspace)
    if where.duplicate is not None:
        stmt = stmt.where(
            EventRow.duplicate_count > 0 if where.duplicate else EventRow.duplicate_count == 0
        )
    if where.test is not None:
        stmt = stmt.where(EventRow.is_test.is_(where.test))
    if where.since is not None:
        stmt = stmt.where(EventRow.received_at >= where.since)
    if where.until is not None:
        stmt = stmt.where(EventRow.received_at < where.until)
    return stmt


async def list_events(
    session: AsyncSession, *, where: EventFilter, limit: int, cursor: tuple[datetime, str] | None
) -> Page[StoredEvent]:
    """Newest first by (received_at, id), `limit` events after `cursor`."""
    stmt = _filtered(sa.select(EventRow).options(_NO_BODY), where)
    page = await fetch_page(
        session, stmt, time_col=EventRow.received_at, id_col=EventRow.id, limit=limit, cursor=cursor
    )
    return page.map(stored_event)


async def get_event(session: AsyncSession, event_id: str) -> StoredEvent | None:
    """One event by our id, or None."""
    row = await session.get(EventRow, event_id)
    return None if row is None else stored_event(row)


async def opened_event(session: AsyncSession, event_id: str, sealer: Sealer) -> OpenedEvent | None:
    """One event with its body and headers, opened when sealed, or None;
    `SealedDataUnreadable` when they cannot be opened."""
    row = await session.get(EventRow, event_id)
    if row is None:
        return None
    return OpenedEvent(
        event=stored_event(row),
        raw_body=open_body(sealer, row.id, row.raw_body, row.sealed_with),
        headers=open_headers(sealer, row.id, row.headers, row.sealed_with),
    )


async def events_of_job(session: AsyncSession, llmtune_job_id: str) -> list[StoredEvent]:
    """A job's events in the order they were stored (its timeline)."""
    stmt = (
        sa.select(EventRow)
        .options(_NO_BODY)
        .where(EventRow.job_id == llmtune_job_id)
        .order_by(EventRow.received_at, EventRow.id)
        .limit(500)
    )
    return [stored_event(row) for row in await session.scalars(stmt)]


@dataclass(frozen=True, slots=True)
class EventRef:
    """What replaying an event needs (no body): its id, type, workspace, job, and sort key."""

    id: str
    type: str
    workspace: str
    job_id: str | None
    received_at: datetime


async def events_received(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[EventRef]:
    """Oldest first by (received_at, id): up to `limit` events received in [since, until) that
    sort after `after` (a keyset, so each batch is one index range scan however many precede)."""
    stmt = sa.select(
        EVENTS.c.id, EVENTS.c.type, EVENTS.c.workspace, EVENTS.c.job_id, EVENTS.c.received_at
    ).where(EVENTS.c.received_at >= since, EVENTS.c.received_at < until)
    if after is not None:
        at, last_id = after
        stmt = stmt.where(
            sa.or_(
                EVENTS.c.received_at > at,
                sa.and_(EVENTS.c.received_at == at, EVENTS.c.id > last_id),
            )
        )
    rows = await session.execute(stmt.order_by(EVENTS.c.received_at, EVENTS.c.id).limit(limit))
    return [EventRef(**row._mapping) for row in rows]
