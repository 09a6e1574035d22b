"""Deleting old events one bounded batch at a time: the store side of `llmtune-receiver purge`.

A batch takes the oldest events received before a cutoff, after a keyset on (received_at, id),
so each batch is one range scan of `ix_events_received_at_id` however many rows came before it.
An event with a delivery still to make (pending, in flight, retrying) is kept; the others are
deleted, and their deliveries, attempts and inference runs go with them by the foreign keys'
ON DELETE CASCADE. Jobs reference no event and are never touched here.

Each deleted event leaves its dedup key behind in `dedup_tombstones`, written in the same
transaction as the delete, so a replay of its signed body is still a duplicate (the writer checks
them, see store/batch.py). Tombstones go in turn once the event they stand for was received
before the dedup cutoff (DEDUP_RETENTION_DAYS); an event already that old leaves none.

Like every repository this one never commits: one batch is one short transaction of the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.delivery_status import UNFINISHED
from service.store.dialect import insert_for
from service.store.tables import DEDUP_TOMBSTONES, DELIVERIES, EVENTS


@dataclass(frozen=True, slots=True)
class PurgeBatch:
    """One batch: how many old events it looked at, and what it did (or would do) with them."""

    scanned: int
    deleted: int
    deliveries: int
    kept: int
    # Dedup keys kept as tombstones (or that would be, on a dry run).
    tombstones: int
    # The keyset the next batch starts after; None when there were no old events left.
    last: tuple[datetime, str] | None


def _old_events(
    cutoff: datetime, after: tuple[datetime, str] | None, limit: int, *, lock: bool
) -> sa.Select[str, datetime, str]:
    stmt = sa.select(EVENTS.c.id, EVENTS.c.received_at, EVENTS.c.dedup_key).where(
        EVENTS.c.received_at < cutoff
    )
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
    now: datetime,
    dedup_cutoff: datetime,
) -> PurgeBatch:
    """Up to `limit` events received before `cutoff` that sort after `after`, oldest first:
    delete those without unfinished deliveries, leaving a tombstone (purged at `now`) for each
    received from `dedup_cutoff` on (count only, on a dry run), and keep the rest."""
    old = (await session.execute(_old_events(cutoff, after, limit, lock=not dry_run))).all()
    if not old:
        return PurgeBatch(scanned=0, deleted=0, deliveries=0, kept=0, tombstones=0, last=None)
    ids = [event_id for event_id, _, _ in old]
    statuses = await _delivery_statuses(session, ids, lock=not dry_run)
    busy = {event_id for event_id, status in statuses if status in UNFINISHED}
    doomed = [event_id for event_id in ids if event_id not in busy]
    tombstones = [
        {"dedup_key": key, "event_id": event_id, "received_at": at, "purged_at": now}
        for event_id, at, key in old
        if event_id not in busy and at >= dedup_cutoff
    ]
    if doomed and not dry_run:
        if tombstones:
            # DO NOTHING: a key is tombstoned once; its first purge is the one that counts.
            insert = insert_for(session, DEDUP_TOMBSTONES).on_conflict_do_nothing()
            await session.execute(insert, tombstones)
        await session.execute(sa.delete(EVENTS).where(EVENTS.c.id.in_(doomed)))
    last_id, last_at, _ = old[-1]
    return PurgeBatch(
        scanned=len(old),
        deleted=len(doomed),
        deliveries=sum(event_id not in busy for event_id, _ in statuses),
        kept=len(busy),
        tombstones=len(tombstones),
        last=(last_at, last_id),
    )


async def purge_tombstones(
    session: AsyncSession, *, cutoff: datetime, limit: int, dry_run: bool
) -> int:
    """Delete up to `limit` tombstones of events received before `cutoff` (on a dry run, count
    them all); how many."""
    old = DEDUP_TOMBSTONES.c.received_at < cutoff
    if dry_run:
        count = sa.select(sa.func.count()).select_from(DEDUP_TOMBSTONES).where(old)
        return int((await session.execute(count)).scalar_one())
    oldest = (
        sa.select(DEDUP_TOMBSTONES.c.dedup_key)
        .where(old)
        .order_by(DEDUP_TOMBSTONES.c.received_at)
        .limit(limit)
    )
    keys = list((await session.execute(oldest)).scalars())
    if keys:
        await session.execute(
            sa.delete(DEDUP_TOMBSTONES).where(DEDUP_TOMBSTONES.c.dedup_key.in_(keys))
        )
    return len(keys)
