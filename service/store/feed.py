"""Rows stored or changed after a keyset position, oldest first: what the admin stream follows.

A feed is one table ordered by (time, id): events by (received_at, id), deliveries by
(updated_at, id), so a delivery that changes again comes round again. Time order is not commit
order: an event's `received_at` is taken before the group commit that stores it, a worker on
another process (or machine, with its own clock) commits its `updated_at` a moment later. A
plain "after the last key" cursor would skip such rows for good, so each poll also looks
`LOOKBACK` behind the position for keys it has not returned yet. A row committed later than
that after its own time is missed; nothing here comes near it (writes give up after 2 s).

Functions take the caller's session and never commit; the caller polls in a read transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from service.store.deliveries import StoredDelivery, stored_delivery
from service.store.events import StoredEvent, stored_event
from service.store.paging import SortKey
from service.store.tables import DeliveryRow, EventRow

R = TypeVar("R", EventRow, DeliveryRow)
V = TypeVar("V", StoredEvent, StoredDelivery)
LOOKBACK = timedelta(seconds=10)
BATCH = 200
# The position of an empty table: before anything that can be stored.
ORIGIN: SortKey = (datetime(1970, 1, 1, tzinfo=UTC), "")


@dataclass(frozen=True, slots=True)
class Feed(Generic[R, V]):
    """One table as a feed: its row class, the (time, id) columns it is ordered by, and the
    plain value a follower answers with."""

    row: type[R]
    view: Callable[[R], V]
    time_col: Any
    id_col: Any
    options: tuple[Any, ...] = ()

    def key(self, row: R | V) -> SortKey:
        """The position of a row (or of its value) in the feed."""
        return getattr(row, self.time_col.key), getattr(row, self.id_col.key)


# The raw body is not needed for a summary and can be large.
EVENTS = Feed(
    EventRow,
    stored_event,
    EventRow.received_at,
    EventRow.id,
    (defer(EventRow.raw_body, raiseload=True),),
)
DELIVERIES = Feed(DeliveryRow, stored_delivery, DeliveryRow.updated_at, DeliveryRow.id)


def _after(feed: Feed[Any, Any], key: SortKey) -> sa.ColumnElement[bool]:
    at, last_id = key
    return sa.or_(feed.time_col > at, sa.and_(feed.time_col == at, feed.id_col > last_id))


async def newest_key(session: AsyncSession, feed: Feed[Any, Any]) -> SortKey:
    """The position of the newest row, or `ORIGIN` when there is none."""
    stmt = (
        sa.select(feed.time_col, feed.id_col)
        .order_by(feed.time_col.desc(), feed.id_col.desc())
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    return ORIGIN if row is None else (row[0], row[1])


class Follower(Generic[V]):
    """Follows one feed from a position: each `poll` returns what was stored or changed since
    the previous one, each version of a row once, oldest first (late commits first)."""

    def __init__(
        self,
        feed: Feed[Any, V],
        position: SortKey,
        *,
        lookback: timedelta = LOOKBACK,
        limit: int = BATCH,
    ) -> None:
        self.feed: Feed[Any, V] = feed
        self.position = position
        # True when the last poll stopped at `limit`: poll again before waiting.
        self.more = False
        self._lookback = lookback
        self._limit = limit
        # Keys at most `lookback` behind the position that were returned (or were there at the
        # start); only these can come back in the late scan.
        self._seen: set[SortKey] = set()

    async def start(self, session: AsyncSession) -> None:
        """Count what is already stored just behind the position as returned (it is old)."""
        self._seen.update(await self._window_keys(session))

    async def poll(self, session: AsyncSession) -> list[V]:
        """Rows stored or changed since the last poll, late commits first. A poll that fails
        (or is cancelled) changes nothing, so it can simply be run again."""
        saved = self.position, set(self._seen)
        try:
            late = await self._late(session)
            fresh = await self._fresh(session)
        except BaseException:
            self.position, self._seen = saved
            raise
        floor = self.position[0] - self._lookback
        self._seen = {key for key in self._seen if key[0] >= floor}
        return [self.feed.view(row) for row in late + fresh]

    async def _window_keys(self, session: AsyncSession) -> list[SortKey]:
        feed = self.feed
        stmt = sa.select(feed.time_col, feed.id_col).where(
            feed.time_col >= self.position[0] - self._lookback,
            sa.not_(_after(feed, self.position)),
        )
        return [(at, row_id) for at, row_id in await session.execute(stmt)]

    async def _fresh(self, session: AsyncSession) -> list[Any]:
        feed = self.feed
        stmt = (
            sa.select(feed.row)
            .options(*feed.options)
            .where(_after(feed, self.position))
            .order_by(feed.time_col, feed.id_col)
            .limit(self._limit)
        )
        rows = list((await session.scalars(stmt)).all())
        self.more = len(rows) == self._limit
        for row in rows:
            self._seen.add(feed.key(row))
        if rows:
            self.position = feed.key(rows[-1])
        return rows

    async def _late(self, session: AsyncSession) -> list[Any]:
        wanted = {key for key in await self._window_keys(session) if key not in self._seen}
        if not wanted:
            return []
        feed = self.feed
        stmt = (
            sa.select(feed.row)
            .options(*feed.options)
            .where(feed.id_col.in_([row_id for _, row_id in wanted]))
        )
        rows = []
        for row in (await session.scalars(stmt)).all():
            key = feed.key(row)
            # A row changed again since the scan is returned as it is now, unless it now sorts
            # after the position: then the fresh query returns it.
            if key in wanted or (key <= self.position and key not in self._seen):
                self._seen.add(key)
                rows.append(row)
        # Gone since the scan (purged) or returned above: not asked for again.
        self._seen.update(wanted)
        return sorted(rows, key=feed.key)
