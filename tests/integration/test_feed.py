"""`store.feed` on SQLite and PostgreSQL: a follower returns what was stored or changed after its
position, oldest first, each version once, including rows committed late (their time is behind
the position, within the lookback), and pages through a backlog `limit` rows at a time."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.ids import new_id
from service.store import feed
from service.store.db import Database
from service.store.feed import ORIGIN, Follower
from service.store.tables import DELIVERIES, EVENTS
from tests.helpers import event_row, single_engine_database

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
_seq = itertools.count(1)


@pytest.fixture
def db(engine: AsyncEngine) -> Database:
    return single_engine_database(engine)


def at(seconds: float) -> datetime:
    """T0 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


async def store_event(db: Database, received: datetime) -> str:
    """An event received at `received`; its id."""
    event_id = new_id("evt")

    async def insert(session: AsyncSession) -> None:
        await session.execute(sa.insert(EVENTS).values(event_row(event_id, received_at=received)))

    await db.write(insert)
    return event_id


async def store_delivery(db: Database, event_id: str, updated: datetime) -> str:
    """A pending delivery of `event_id` last changed at `updated`; its id."""
    delivery_id = new_id("dlv")

    async def insert(session: AsyncSession) -> None:
        await session.execute(
            sa.insert(DELIVERIES).values(
                id=delivery_id,
                event_id=event_id,
                route="log",
                handler="log",
                job_id="job-1",
                seq=next(_seq),
                status="pending",
                next_attempt_at=updated,
                created_at=updated,
                updated_at=updated,
            )
        )

    await db.write(insert)
    return delivery_id


async def set_status(db: Database, delivery_id: str, status: str, updated: datetime) -> None:
    """Change a delivery as the worker would."""

    async def update(session: AsyncSession) -> None:
        await session.execute(
            sa.update(DELIVERIES)
            .where(DELIVERIES.c.id == delivery_id)
            .values(status=status, updated_at=updated)
        )

    await db.write(update)


async def ids(db: Database, follower: Follower[Any]) -> list[str]:
    """The ids one poll returns."""
    return [row.id for row in await db.read(follower.poll)]


async def test_returns_rows_after_the_position_oldest_first_once(db: Database) -> None:
    """A poll returns what followed the position, oldest first; the next one nothing new."""
    await store_event(db, at(0))
    follower = Follower(feed.EVENTS, await db.read(lambda s: feed.newest_key(s, feed.EVENTS)))
    await db.read(follower.start)
    second, first = await store_event(db, at(2)), await store_event(db, at(1))
    assert await ids(db, follower) == [first, second]
    assert await ids(db, follower) == []
    assert follower.position == (at(2), second)


async def test_a_late_commit_behind_the_position_is_returned_once(db: Database) -> None:
    """A row whose time is behind the position but which committed after the last poll (another
    process's batch) is returned by the next poll, once."""
    follower = Follower(feed.EVENTS, ORIGIN)
    await db.read(follower.start)
    ahead = await store_event(db, at(10))
    assert await ids(db, follower) == [ahead]
    late = await store_event(db, at(9))
    assert await ids(db, follower) == [late]
    assert await ids(db, follower) == []
    assert follower.position == (at(10), ahead)


async def test_beyond_the_lookback_a_late_row_is_not_returned(db: Database) -> None:
    """The look-behind is bounded: a row older than `lookback` behind the position is old."""
    follower = Follower(feed.EVENTS, ORIGIN, lookback=timedelta(seconds=5))
    await db.read(follower.start)
    await store_event(db, at(10))
    await ids(db, follower)
    await store_event(db, at(4))
    assert await ids(db, follower) == []


async def test_start_counts_what_is_already_behind_the_position_as_sent(db: Database) -> None:
    """Rows stored before the follower started, within the look-behind, are not returned."""
    await store_event(db, at(8))
    newest = await store_event(db, at(9))
    follower = Follower(feed.EVENTS, (at(9), newest))
    await db.read(follower.start)
    assert await ids(db, follower) == []


async def test_a_delivery_comes_round_again_when_it_changes(db: Database) -> None:
    """Deliveries follow `updated_at`: each change is a new version, returned once."""
    event_id = await store_event(db, at(0))
    follower = Follower(feed.DELIVERIES, ORIGIN)
    await db.read(follower.start)
    delivery_id = await store_delivery(db, event_id, at(1))
    assert await ids(db, follower) == [delivery_id]
    await set_status(db, delivery_id, "succeeded", at(2))
    [row] = await db.read(follower.poll)
    assert (row.id, row.status) == (delivery_id, "succeeded")
    assert await ids(db, follower) == []


async def test_a_backlog_comes_limit_rows_at_a_time(db: Database) -> None:
    """`more` says that a poll stopped at `limit` and another should follow at once."""
    stored = [await store_event(db, at(n)) for n in range(3)]
    follower = Follower(feed.EVENTS, ORIGIN, limit=2)
    await db.read(follower.start)
    assert (await ids(db, follower), follower.more) == (stored[:2], True)
    assert (await ids(db, follower), follower.more) == (stored[2:], False)


async def test_newest_key_of_an_empty_table_is_the_origin(db: Database) -> None:
    """With nothing stored, a stream starts before anything that can be."""
    assert await db.read(lambda s: feed.newest_key(s, feed.DELIVERIES)) == ORIGIN
