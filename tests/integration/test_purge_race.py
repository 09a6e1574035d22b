"""A replay that races a purge of its original, on PostgreSQL (SQLite has one writer: no race).

The purge's transaction is held open by the test while the writer stores the replay; the test
commits it once the writer's transaction is waiting on one of the purge's row locks (as
`pg_stat_activity` shows), or once the write is done without waiting. Either way the replay must
come out a duplicate of the purged event, with nothing stored or fanned out for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.store.db import make_sessionmaker
from service.store.purge import purge_batch
from service.store.tables import DEDUP_TOMBSTONES, DELIVERIES, EVENTS
from service.store.writer import IngestWriter, WriteResult
from tests.helpers import T0, emptied_engine, lifecycle, new_event, single_engine_database

pytestmark = pytest.mark.postgresql

LATER = T0 + timedelta(days=100)
WAITING = sa.text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


@pytest.fixture
async def postgresql_engine(postgresql_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the emptied PostgreSQL test database, emptied again after the test."""
    engine = await emptied_engine(postgresql_url)
    yield engine
    await engine.dispose()
    await (await emptied_engine(postgresql_url)).dispose()


@pytest.fixture
async def writer(postgresql_engine: AsyncEngine) -> AsyncIterator[IngestWriter]:
    running = IngestWriter(single_engine_database(postgresql_engine))
    async with running.running():
        yield running


async def stored_and_delivered(engine: AsyncEngine, writer: IngestWriter) -> str:
    """The original, stored at T0 with its delivery made; its id."""
    original = await writer.write(new_event(lifecycle("training.completed")))
    async with engine.begin() as connection:
        await connection.execute(sa.update(DELIVERIES).values(status="succeeded"))
    return original.event_id


async def purge(session: AsyncSession) -> None:
    """One purge batch of everything received before LATER, in the caller's transaction."""
    batch = await purge_batch(
        session, cutoff=LATER, after=None, limit=500, dry_run=False, now=LATER, dedup_cutoff=T0
    )
    assert (batch.deleted, batch.tombstones) == (1, 1)


async def until_waiting_or_done(engine: AsyncEngine, write: asyncio.Task[WriteResult]) -> None:
    """Return once the write waits on a lock held by the open purge, or has finished."""
    async with engine.connect() as connection:
        while not write.done() and not await connection.scalar(WAITING):
            # pg_stat_activity is a snapshot kept until the transaction ends: end it, or every
            # later look would see the first one's (taken before the write had started waiting).
            await connection.rollback()
            # Not a deadline: only how often to look again while the write is still running.
            await asyncio.wait([write], timeout=0.01)


async def rows_after(engine: AsyncEngine) -> tuple[int, int, int]:
    """How many events, deliveries and tombstones are stored."""
    async with engine.connect() as connection:
        count = sa.select(sa.func.count())
        return (
            await connection.scalar(count.select_from(EVENTS)) or 0,
            await connection.scalar(count.select_from(DELIVERIES)) or 0,
            await connection.scalar(count.select_from(DEDUP_TOMBSTONES)) or 0,
        )


async def test_replay_during_an_uncommitted_purge(
    postgresql_engine: AsyncEngine, writer: IngestWriter
) -> None:
    """The purge has deleted the original and written its tombstone, uncommitted: the replay's
    insert waits for it, then finds the tombstone (a lookup before the insert would not)."""
    original = await stored_and_delivered(postgresql_engine, writer)
    async with make_sessionmaker(postgresql_engine)() as session, session.begin():
        await purge(session)
        write = asyncio.create_task(writer.write(new_event(lifecycle("training.completed"))))
        await until_waiting_or_done(postgresql_engine, write)
    result = await write
    assert result == WriteResult(event_id=original, duplicate=True)
    assert await rows_after(postgresql_engine) == (0, 0, 1)


async def test_replay_conflicting_with_an_event_being_purged(
    postgresql_engine: AsyncEngine, writer: IngestWriter
) -> None:
    """The purge has locked the original but not yet deleted it: the replay conflicts, its
    count waits for the purge, and the original it then cannot find left a tombstone."""
    original = await stored_and_delivered(postgresql_engine, writer)
    async with make_sessionmaker(postgresql_engine)() as session, session.begin():
        await session.execute(sa.select(EVENTS.c.id).with_for_update())
        write = asyncio.create_task(writer.write(new_event(lifecycle("training.completed"))))
        await until_waiting_or_done(postgresql_engine, write)
        await purge(session)
    result = await write
    assert result == WriteResult(event_id=original, duplicate=True)
    assert await rows_after(postgresql_engine) == (0, 0, 1)
