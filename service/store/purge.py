"""Deleting old events one bounded batch at a time: the store side of `llmtune-receiver purge`.

A batch takes the oldest events received before a cutoff, after a keyset on (received_at, id),
so each batch is one range scan of `ix_events_received_at_id` however many rows came before it.
An event with a delivery still to make (pending, in flight, retrying) is kept; the others are
deleted, and their deliveries, attempts and inference runs go with them by the foreign keys'
ON DELETE CASCADE. Jobs reference no event and are never touched here.

Like every repository this one never commits: one batch is one short transaction of the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.deliveries import UNFINISHED
from service.store.tables import DELIVERIES, EVENTS


@dataclass(frozen=True, slots=True)
class PurgeBatch:
    """One batch: how many old events it looked at, and what it did (or would do) with them."""

    scanned: int
    deleted: int
    deliveries: int
    kept: int
    # The keyset the next batch starts after; None when there were no old events left.
    last: tuple[datetime, str] | None


def _old_events(
    cutoff: datetime, after: tuple[datetime, str] | None, limit: int, *, lock: bool
) -> sa.Select[str, datetime]:
    stmt = sa.select(EVENTS.c.id, EVENTS.c.received_at).where(EVENTS.c.received_at < cutoff)
    if after is not None:
        at, last_id = after
        stmt = stmt.where(
            # The plain `>=` is what bounds the index range; the OR only drops the rows that
            # share `at` and were already seen (alone, it would be a filter over every row).
            EVENTS.c.received_at >= at,
            sa.or_(EVENTS.c.received_at > at, EVENTS.c.id > last_id),
        )
    stmt = stmt.order_by(EVENTS.c.received_at, EVENTS.c.id).limit(limit)
    # PostgreSQL: a delivery added to one of these events (a replay to a new route) must wait
    # for this batch, or the cascade would take it unseen. SQLite renders no FOR UPDATE: its
    # write transaction already keeps every other writer out.
    return stmt.with_for_update() if lock else stmt


async def _delivery_statuses(
    session: AsyncSession, event_ids: Sequence[str], *, lock: bool
) -> list[tuple[str, str]]:
    stmt = sa.select(DELIVERIES.c.event_id, DELIVERIES.c.status).where(
        DELIVERIES.c.event_id.in_(event_ids)
    )
    if lock:
        # FOR SHARE: a retry or replay cannot make one of these due again until the batch ends,
        # while the worker can still record attempts (they only take a key-share lock).
        stmt = stmt.with_for_update(read=True)
    return [(event_id, status) for event_id, status in await session.execute(stmt)]


async def purge_batch(
    session: AsyncSession,
    *,
    cutoff: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
    dry_run: bool,
) -> PurgeBatch:
    """Up to `limit` events received before `cutoff` that sort after `after`, oldest first:
    delete those without unfinished deliveries (count only, on a dry run) and keep the rest."""
    old = (await session.execute(_old_events(cutoff, after, limit, lock=not dry_run))).all()
    if not old:
        return PurgeBatch(scanned=0, deleted=0, deliveries=0, kept=0, last=None)
    ids = [event_id for event_id, _ in old]
    statuses = await _delivery_statuses(session, ids, lock=not dry_run)
    busy = {event_id for event_id, status in statuses if status in UNFINISHED}
    doomed = [event_id for event_id in ids if event_id not in busy]
    if doomed and not dry_run:
        await session.execute(sa.delete(EVENTS).where(EVENTS.c.id.in_(doomed)))
    last_id, last_at = old[-1]
    return PurgeBatch(
        scanned=len(old),
        deleted=len(doomed),
        deliveries=sum(event_id not in busy for event_id, _ in statuses),
        kept=len(busy),
        last=(last_at, last_id),
    )
