"""The deliveries table: one row per event and route, written with the event (`enqueue`), and
what operators do with them (list, inspect, retry, replay). Claiming and finishing attempts is
the worker's side, in `outbox.py`. Functions take the caller's session and never commit, and
answer in frozen values (`StoredDelivery`, `StoredAttempt`), never in ORM rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.delivery_status import RETRYABLE, DeliveryStatus
from service.ids import new_id
from service.routing import DEFAULT_MAX_ATTEMPTS, Subscription
from service.store.paging import Page, fetch_page
from service.store.tables import DELIVERIES, EVENTS, AttemptRow, DeliveryRow

NOTIFY_CHANNEL = "llmtune_deliveries"
MAX_ERROR_TEXT = 2000


def _next_seq(session: AsyncSession) -> sa.ColumnElement[int] | None:
    # PostgreSQL's column default draws from a sequence (concurrent writers); SQLite has one
    # writer at a time, so max + 1 inside the write transaction is race-free there.
    if session.get_bind().dialect.name == "postgresql":
        return None
    return sa.select(sa.func.coalesce(sa.func.max(DELIVERIES.c.seq), 0) + 1).scalar_subquery()


def new_delivery(
    *,
    event_id: str,
    job_id: str | None,
    route: Subscription,
    at: datetime,
    trace_parent: str | None,
) -> dict[str, Any]:
    """The row of a new `pending` delivery of one event to one route, due `at` (without `seq`,
    which depends on the dialect). The one place a delivery row is made."""
    status: DeliveryStatus = "pending"
    return {
        "id": new_id("dlv"),
        "event_id": event_id,
        "route": route.name,
        "handler": route.handler,
        "job_id": job_id,
        "status": status,
        "attempts": 0,
        "max_attempts": route.max_attempts,
        "next_attempt_at": at,
        "created_at": at,
        "updated_at": at,
        "trace_parent": trace_parent,
    }


async def enqueue(
    session: AsyncSession,
    *,
    event_id: str,
    job_id: str | None,
    routes: Sequence[Subscription],
    at: datetime,
) -> None:
    """One `pending` delivery per route, due now, in route order (a replay: no request traced
    it, so it carries no trace parent)."""
    seq = _next_seq(session)
    for route in routes:
        values = new_delivery(
            event_id=event_id, job_id=job_id, route=route, at=at, trace_parent=None
        )
        if seq is not None:
            values["seq"] = seq
        await session.execute(sa.insert(DELIVERIES).values(values))
    if routes and seq is None:
        # Delivered at commit to every worker LISTENing (other processes, other machines).
        await session.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")))


def clip(text: str | None) -> str | None:
    """Error text fit for a column: no NUL, at most 2000 characters."""
    return None if text is None else text.replace("\x00", "")[:MAX_ERROR_TEXT]


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    """A delivery of an event to a route, as it stands."""

    id: str
    event_id: str
    route: str
    handler: str
    job_id: str | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredAttempt:
    """One try of a delivery: when, how long, and what came of it."""

    number: int
    started_at: datetime
    duration_ms: float
    outcome: str
    detail: str | None


def stored_delivery(row: DeliveryRow) -> StoredDelivery:
    """The plain value of a deliveries row."""
    return StoredDelivery(
        id=row.id,
        event_id=row.event_id,
        route=row.route,
        handler=row.handler,
        job_id=row.job_id,
        status=cast(DeliveryStatus, row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _stored_attempt(row: AttemptRow) -> StoredAttempt:
    return StoredAttempt(
        number=row.number,
        started_at=row.started_at,
        duration_ms=row.duration_ms,
        outcome=row.outcome,
        detail=row.detail,
    )


async def deliveries_of(session: AsyncSession, event_ids: Sequence[str]) -> list[StoredDelivery]:
    """The deliveries of these events, oldest first."""
    if not event_ids:
        return []
    stmt = (
        sa.select(DeliveryRow)
        .where(DeliveryRow.event_id.in_(event_ids))
        .order_by(DeliveryRow.created_at, DeliveryRow.id)
    )
    return [stored_delivery(row) for row in await session.scalars(stmt)]


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """Admin list and bulk-retry filters; None means "any"."""

    status: str | None = None
    route: str | None = None
    event_id: str | None = None
    job_id: str | None = None
    workspace: str | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before


def _matching(where: DeliveryFilter) -> list[sa.ColumnElement[bool]]:
    conditions = []
    for column, value in (
        (DELIVERIES.c.status, where.status),
        (DELIVERIES.c.route, where.route),
        (DELIVERIES.c.event_id, where.event_id),
        (DELIVERIES.c.job_id, where.job_id),
    ):
        if value is not None:
            conditions.append(column == value)
    if where.workspace is not None:
        of_workspace = sa.select(EVENTS.c.id).where(EVENTS.c.workspace == where.workspace)
        conditions.append(DELIVERIES.c.event_id.in_(of_workspace))
    if where.since is not None:
        conditions.append(DELIVERIES.c.created_at >= where.since)
    if where.until is not None:
        conditions.append(DELIVERIES.c.created_at < where.until)
    return conditions


async def list_deliveries(
    session: AsyncSession,
    *,
    where: DeliveryFilter,
    limit: int,
    cursor: tuple[datetime, str] | None,
) -> Page[StoredDelivery]:
    """Newest first by (created_at, id)."""
    stmt = sa.select(DeliveryRow).where(*_matching(where))
    page = await fetch_page(
        session,
        stmt,
        time_col=DeliveryRow.created_at,
        id_col=DeliveryRow.id,
        limit=limit,
        cursor=cursor,
    )
    return page.map(stored_delivery)


async def get_delivery(
    session: AsyncSession, delivery_id: str, *, fresh: bool = False
) -> StoredDelivery | None:
    """One delivery by id, or None; `fresh` reads it again after an update in this session."""
    row = await session.get(DeliveryRow, delivery_id, populate_existing=fresh)
    return None if row is None else stored_delivery(row)


async def attempts_of(session: AsyncSession, delivery_id: str) -> list[StoredAttempt]:
    """A delivery's attempts, first to last."""
    stmt = (
        sa.select(AttemptRow)
        .where(AttemptRow.delivery_id == delivery_id)
        .order_by(AttemptRow.number)
    )
    return [_stored_attempt(row) for row in await session.scalars(stmt)]


def _fresh_budget(budgets: Mapping[str, int]) -> sa.ColumnElement[int]:
    # Another full set of attempts, as many as the route (as configured now) allows.
    budget = sa.case(budgets, value=DELIVERIES.c.route, else_=DEFAULT_MAX_ATTEMPTS)
    return DELIVERIES.c.attempts + budget


async def retry(
    session: AsyncSession,
    *,
    where: DeliveryFilter,
    ids: Sequence[str] | None,
    budgets: Mapping[str, int],
    now: datetime,
) -> int:
    """Make dead (or waiting) deliveries due now with a fresh attempt budget; how many."""
    conditions = [*_matching(where), DELIVERIES.c.status.in_(RETRYABLE)]
    if ids is not None:
        conditions.append(DELIVERIES.c.id.in_(ids))
    result = await session.execute(
        sa.update(DELIVERIES)
        .where(*conditions)
        .values(
            status="pending",
            next_attempt_at=now,
            max_attempts=_fresh_budget(budgets),
            updated_at=now,
        )
        .returning(DELIVERIES.c.id)
    )
    return len(result.all())


async def replay(
    session: AsyncSession,
    *,
    event_id: str,
    job_id: str | None,
    routes: Sequence[Subscription],
    now: datetime,
) -> int:
    """Deliver an event again to `routes`: a finished delivery is made due again (same id, so
    destinations can tell it is the same message), a missing one is created. In-flight ones are
    left alone. How many deliveries were queued."""
    existing = {
        row.route: row
        for row in (
            await session.scalars(sa.select(DeliveryRow).where(DeliveryRow.event_id == event_id))
        ).all()
    }
    budgets = {route.name: route.max_attempts for route in routes}
    queued = 0
    for route in routes:
        row = existing.get(route.name)
        if row is None:
            await enqueue(session, event_id=event_id, job_id=job_id, routes=[route], at=now)
            queued += 1
        elif row.status != "in_flight":
            await session.execute(
                sa.update(DELIVERIES)
                .where(DELIVERIES.c.id == row.id, DELIVERIES.c.status != "in_flight")
                .values(
                    status="pending",
                    next_attempt_at=now,
                    max_attempts=_fresh_budget(budgets),
                    updated_at=now,
                )
            )
            queued += 1
    return queued
