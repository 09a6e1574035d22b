"""The deliveries table (the outbox): one row per event and route, written with the event, then
claimed, leased and finished by dispatch workers.

Claims are race-safe on both stores: PostgreSQL's `FOR UPDATE SKIP LOCKED` lets many workers
share the queue; SQLite's single writer (`BEGIN IMMEDIATE`) serializes the one claimer. A
delivery waits while an earlier delivery (lower `seq`) of the same job to the same route is
unfinished. Finishing is guarded by the attempt number, so a worker whose lease expired cannot
overwrite a newer attempt's result. Functions take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.dispatch.routing import DEFAULT_MAX_ATTEMPTS, Route
from service.ids import new_id
from service.store.paging import Page, fetch_page
from service.store.tables import ATTEMPTS, DELIVERIES, EVENTS, AttemptRow, DeliveryRow

UNFINISHED = ("pending", "in_flight", "retrying")
NOTIFY_CHANNEL = "llmtune_deliveries"
MAX_ERROR_TEXT = 2000


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery leased to this worker for one attempt, with what its handler needs."""

    id: str
    attempt: int
    max_attempts: int
    route: str
    handler: str
    event_id: str
    job_id: str | None
    source: str
    workspace: str
    raw_body: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Finish:
    """The result of one attempt, to be recorded."""

    status: str
    next_attempt_at: datetime | None
    outcome: str
    detail: str | None
    started_at: datetime
    duration_ms: float


def _next_seq(session: AsyncSession) -> sa.ColumnElement[int] | None:
    # PostgreSQL's column default draws from a sequence (concurrent writers); SQLite has one
    # writer at a time, so max + 1 inside the write transaction is race-free there.
    if session.get_bind().dialect.name == "postgresql":
        return None
    return sa.select(sa.func.coalesce(sa.func.max(DELIVERIES.c.seq), 0) + 1).scalar_subquery()


async def enqueue(
    session: AsyncSession,
    *,
    event_id: str,
    job_id: str | None,
    routes: Sequence[Route],
    at: datetime,
) -> None:
    """One `pending` delivery per route, due now, in route order."""
    seq = _next_seq(session)
    for route in routes:
        values: dict[str, Any] = {
            "id": new_id("dlv"),
            "event_id": event_id,
            "route": route.name,
            "handler": route.handler,
            "job_id": job_id,
            "status": "pending",
            "attempts": 0,
            "max_attempts": route.max_attempts,
            "next_attempt_at": at,
            "created_at": at,
            "updated_at": at,
        }
        if seq is not None:
            values["seq"] = seq
        await session.execute(sa.insert(DELIVERIES).values(values))
    if routes and seq is None:
        # Delivered at commit to every worker LISTENing (other processes, other machines).
        await session.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")))


def _claimable(now: datetime) -> sa.Select[tuple[str]]:
    d = DELIVERIES.alias("d")
    p = DELIVERIES.alias("p")
    due = sa.or_(
        sa.and_(d.c.status.in_(("pending", "retrying")), d.c.next_attempt_at <= now),
        sa.and_(d.c.status == "in_flight", d.c.lease_expires_at <= now),
    )
    earlier_unfinished = (
        sa.select(sa.literal(1))
        .where(
            p.c.job_id == d.c.job_id,
            p.c.route == d.c.route,
            p.c.seq < d.c.seq,
            p.c.status.in_(UNFINISHED),
        )
        .exists()
    )
    return (
        sa.select(d.c.id)
        .where(due, sa.or_(d.c.job_id.is_(None), ~earlier_unfinished))
        .order_by(d.c.next_attempt_at, d.c.seq)
    )


async def claim(
    session: AsyncSession, *, now: datetime, lease: timedelta, limit: int
) -> list[Claimed]:
    """Lease up to `limit` due deliveries to the caller, one attempt each."""
    ids = list(
        (
            await session.scalars(_claimable(now).limit(limit).with_for_update(skip_locked=True))
        ).all()
    )
    if not ids:
        return []
    await session.execute(
        sa.update(DELIVERIES)
        .where(DELIVERIES.c.id.in_(ids))
        .values(
            status="in_flight",
            attempts=DELIVERIES.c.attempts + 1,
            lease_expires_at=now + lease,
            updated_at=now,
        )
    )
    rows = await session.execute(
        sa.select(
            DELIVERIES.c.id,
            DELIVERIES.c.attempts.label("attempt"),
            DELIVERIES.c.max_attempts,
            DELIVERIES.c.route,
            DELIVERIES.c.handler,
            DELIVERIES.c.event_id,
            DELIVERIES.c.job_id,
            EVENTS.c.source,
            EVENTS.c.workspace,
            EVENTS.c.raw_body,
            EVENTS.c.received_at,
        )
        .join(EVENTS, EVENTS.c.id == DELIVERIES.c.event_id)
        .where(DELIVERIES.c.id.in_(ids))
        .order_by(DELIVERIES.c.seq)
    )
    return [Claimed(**row._mapping) for row in rows]


async def finish(session: AsyncSession, claimed: Claimed, result: Finish, *, now: datetime) -> bool:
    """Record the attempt and move the delivery on; False when this attempt was overtaken
    (its lease expired and another attempt began), in which case nothing is written."""
    updated = await session.execute(
        sa.update(DELIVERIES)
        .where(
            DELIVERIES.c.id == claimed.id,
            DELIVERIES.c.attempts == claimed.attempt,
            DELIVERIES.c.status == "in_flight",
        )
        .values(
            status=result.status,
            next_attempt_at=result.next_attempt_at or now,
            lease_expires_at=None,
            last_error=None if result.status == "succeeded" else _clip(result.detail),
            updated_at=now,
        )
        .returning(DELIVERIES.c.id)
    )
    if updated.scalar_one_or_none() is None:
        return False
    await session.execute(
        sa.insert(ATTEMPTS).values(
            delivery_id=claimed.id,
            number=claimed.attempt,
            started_at=result.started_at,
            duration_ms=result.duration_ms,
            outcome=result.outcome,
            detail=_clip(result.detail),
        )
    )
    return True


async def release(session: AsyncSession, claimed: Claimed, *, now: datetime) -> None:
    """Give an unstarted or abandoned attempt back (shutdown): due again now, attempt undone."""
    await session.execute(
        sa.update(DELIVERIES)
        .where(
            DELIVERIES.c.id == claimed.id,
            DELIVERIES.c.attempts == claimed.attempt,
            DELIVERIES.c.status == "in_flight",
        )
        .values(
            status="retrying" if claimed.attempt > 1 else "pending",
            attempts=DELIVERIES.c.attempts - 1,
            lease_expires_at=None,
            next_attempt_at=now,
            updated_at=now,
        )
    )


async def queue_stats(session: AsyncSession, *, now: datetime) -> tuple[int, float]:
    """(deliveries not yet finished, seconds the oldest due one has waited)."""
    row = (
        await session.execute(
            sa.select(
                sa.func.count(),
                sa.func.min(DELIVERIES.c.next_attempt_at),
            ).where(DELIVERIES.c.status.in_(UNFINISHED))
        )
    ).one()
    count, oldest = row
    waited = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return int(count), waited


def _clip(text: str | None) -> str | None:
    return None if text is None else text.replace("\x00", "")[:MAX_ERROR_TEXT]


async def deliveries_of(session: AsyncSession, event_ids: Sequence[str]) -> list[DeliveryRow]:
    """The deliveries of these events, oldest first."""
    if not event_ids:
        return []
    stmt = (
        sa.select(DeliveryRow)
        .where(DeliveryRow.event_id.in_(event_ids))
        .order_by(DeliveryRow.created_at, DeliveryRow.id)
    )
    return list((await session.scalars(stmt)).all())


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """Admin list and bulk-retry filters; None means "any"."""

    status: str | None = None
    route: str | None = None
    event_id: str | None = None
    job_id: str | None = None


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
    return conditions


async def list_deliveries(
    session: AsyncSession,
    *,
    where: DeliveryFilter,
    limit: int,
    cursor: tuple[datetime, str] | None,
) -> Page[DeliveryRow]:
    """Newest first by (created_at, id)."""
    stmt = sa.select(DeliveryRow).where(*_matching(where))
    return await fetch_page(
        session,
        stmt,
        time_col=DeliveryRow.created_at,
        id_col=DeliveryRow.id,
        limit=limit,
        cursor=cursor,
    )


async def get_delivery(session: AsyncSession, delivery_id: str) -> DeliveryRow | None:
    """One delivery by id, or None."""
    return await session.get(DeliveryRow, delivery_id)


async def attempts_of(session: AsyncSession, delivery_id: str) -> list[AttemptRow]:
    """A delivery's attempts, first to last."""
    stmt = (
        sa.select(AttemptRow)
        .where(AttemptRow.delivery_id == delivery_id)
        .order_by(AttemptRow.number)
    )
    return list((await session.scalars(stmt)).all())


RETRYABLE = ("dead", "retrying")


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
    routes: Sequence[Route],
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
