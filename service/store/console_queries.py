"""Read-only summaries the web console draws: how each event's deliveries stand, deliveries by
status, events per hour, and the bodies of a job's events (for its metrics). Functions take the
caller's session, never write, and answer in frozen values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.delivery_status import DELIVERY_STATUSES, DeliveryStatus
from service.store.sealing import Sealer, open_body
from service.store.tables import DELIVERIES, EVENTS

# A job's metrics chart reads at most this many of its events (the timeline's own cap).
MAX_JOB_EVENTS = 500


@dataclass(frozen=True, slots=True)
class StatusCount:
    """How many deliveries (of one event, or of all) have one status."""

    status: DeliveryStatus
    count: int


@dataclass(frozen=True, slots=True)
class HourCount:
    """How many events were received in the hour starting at `start` (UTC)."""

    start: datetime
    count: int


@dataclass(frozen=True, slots=True)
class JobEventBody:
    """One of a job's events with its raw body in clear (never its headers)."""

    id: str
    type: str
    received_at: datetime
    raw_body: bytes


async def delivery_counts(
    session: AsyncSession, event_ids: Sequence[str]
) -> dict[str, tuple[StatusCount, ...]]:
    """For each of `event_ids` that has deliveries, how many have each status (statuses with
    none left out), in `DELIVERY_STATUSES` order."""
    if not event_ids:
        return {}
    stmt = (
        sa.select(DELIVERIES.c.event_id, DELIVERIES.c.status, sa.func.count())
        .where(DELIVERIES.c.event_id.in_(event_ids))
        .group_by(DELIVERIES.c.event_id, DELIVERIES.c.status)
    )
    found: dict[str, dict[str, int]] = {}
    for event_id, status, count in await session.execute(stmt):
        found.setdefault(event_id, {})[status] = int(count)
    return {event_id: _ordered(counts) for event_id, counts in found.items()}


def _ordered(counts: dict[str, int]) -> tuple[StatusCount, ...]:
    return tuple(StatusCount(s, counts[s]) for s in DELIVERY_STATUSES if counts.get(s))


async def deliveries_by_status(session: AsyncSession) -> tuple[StatusCount, ...]:
    """Every delivery status with how many deliveries have it (zero included)."""
    stmt = sa.select(DELIVERIES.c.status, sa.func.count()).group_by(DELIVERIES.c.status)
    counts = {status: int(count) for status, count in await session.execute(stmt)}
    return tuple(StatusCount(s, counts.get(s, 0)) for s in DELIVERY_STATUSES)


def hour_starts(now: datetime, hours: int) -> list[datetime]:
    """The starts of the `hours` clock hours up to and including the one `now` is in."""
    current = now.replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=back) for back in range(hours - 1, -1, -1)]


async def events_per_hour(
    session: AsyncSession, *, now: datetime, hours: int = 24
) -> tuple[HourCount, ...]:
    """Events received in each of the last `hours` clock hours (the current one so far),
    oldest first; one index range scan, the same on both databases."""
    starts = hour_starts(now, hours)
    ends = [*starts[1:], starts[-1] + timedelta(hours=1)]
    column = EVENTS.c.received_at
    sums = [
        sa.func.coalesce(sa.func.sum(sa.case((sa.and_(column >= a, column < b), 1), else_=0)), 0)
        for a, b in zip(starts, ends, strict=True)
    ]
    stmt = sa.select(*sums).where(column >= starts[0], column < ends[-1])
    row = (await session.execute(stmt)).one()
    return tuple(HourCount(start, int(count)) for start, count in zip(starts, row, strict=True))


async def job_event_bodies(
    session: AsyncSession, llmtune_job_id: str, sealer: Sealer
) -> list[JobEventBody]:
    """A job's events, oldest first (at most `MAX_JOB_EVENTS`), each body opened when sealed;
    `SealedDataUnreadable` when one cannot be."""
    stmt = (
        sa.select(
            EVENTS.c.id,
            EVENTS.c.type,
            EVENTS.c.received_at,
            EVENTS.c.raw_body,
            EVENTS.c.sealed_with,
        )
        .where(EVENTS.c.job_id == llmtune_job_id)
        .order_by(EVENTS.c.received_at, EVENTS.c.id)
        .limit(MAX_JOB_EVENTS)
    )
    return [
        JobEventBody(
            id=row.id,
            type=row.type,
            received_at=cast(datetime, row.received_at),
            raw_body=open_body(sealer, row.id, row.raw_body, row.sealed_with),
        )
        for row in await session.execute(stmt)
    ]
