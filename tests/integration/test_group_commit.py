"""Group commit: concurrent writes share one transaction, and every failure is answered right.

On SQLite and PostgreSQL: repeats inside one batch, a row the database refuses in the middle of a
batch, the connection dropped mid-batch (PostgreSQL kills the session itself), a full queue, and
draining on shutdown. Commits are counted with SQLAlchemy's own `commit` event.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from service.store.db import StoreUnavailable
from service.store.events import NewEvent
from service.store.tables import DEDUP_TOMBSTONES, DeliveryRow, EventRow, JobRow
from service.store.writer import IngestWriter, Overloaded, WriteResult
from tests.helpers import T0, emptied_engine, lifecycle, new_event, single_engine_database


@pytest.fixture
async def postgresql_engine(postgresql_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the emptied PostgreSQL test database."""
    engine = await emptied_engine(postgresql_url)
    yield engine
    await engine.dispose()


async def count_rows(engine: AsyncEngine, model: type[Any]) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(model))).scalar_one()


@contextmanager
def commits_counted(engine: AsyncEngine) -> Iterator[list[int]]:
    """A list that grows by one for every commit on `engine` while the block runs."""
    seen: list[int] = []

    def on_commit(_conn: Connection) -> None:
        seen.append(1)

    sa.event.listen(engine.sync_engine, "commit", on_commit)
    try:
        yield seen
    finally:
        sa.event.remove(engine.sync_engine, "commit", on_commit)


def writer_for(
    engine: AsyncEngine, *, queue_limit: int = 4096, batch_limit: int = 256
) -> IngestWriter:
    return IngestWriter(
        single_engine_database(engine),
        queue_limit=queue_limit,
        batch_limit=batch_limit,
    )


async def write_all(writer: IngestWriter, news: list[NewEvent]) -> list[WriteResult | Exception]:
    """Write `news` concurrently (queued before the flusher wakes, so they form one batch)."""
    results = await asyncio.gather(*(writer.write(new) for new in news), return_exceptions=True)
    return [r if isinstance(r, WriteResult | Exception) else Exception(repr(r)) for r in results]


async def test_concurrent_writes_share_one_commit(engine: AsyncEngine) -> None:
    """Forty distinct events written together are committed in a single transaction."""
    writer = writer_for(engine)
    news = [new_event(lifecycle("training.started", job=f"job-{n}")) for n in range(40)]
    async with writer.running():
        with commits_counted(engine) as commits:
            results = await write_all(writer, news)
    assert len(commits) == 1
    assert [r.event_id for r in results if isinstance(r, WriteResult)] == [n.id for n in news]
    assert await count_rows(engine, EventRow) == 40
    assert await count_rows(engine, JobRow) == 40
    assert await count_rows(engine, DeliveryRow) == 40


async def test_batch_limit_splits_a_burst(engine: AsyncEngine) -> None:
    """A burst larger than the batch limit is committed in limit-sized batches, all answered."""
    writer = writer_for(engine, batch_limit=8)
    news = [new_event(lifecycle("training.started", job=f"job-{n}")) for n in range(20)]
    async with writer.running():
        with commits_counted(engine) as commits:
            results = await write_all(writer, news)
    assert len(commits) == 3
    assert all(isinstance(r, WriteResult) and not r.duplicate for r in results)


async def test_repeats_within_one_batch_and_of_a_stored_event(engine: AsyncEngine) -> None:
    """Copies of one event in one batch: one is stored, the rest are its duplicates; copies of
    an event stored by an earlier batch point at that event."""
    writer = writer_for(engine)
    stored_before = new_event(lifecycle("training.started", job="old"))
    fresh = lifecycle("training.completed", job="new")
    async with writer.running():
        first = await writer.write(stored_before)
        news = [
            new_event(fresh, at=T0),
            new_event(lifecycle("training.started", job="old"), at=T0),
            new_event(fresh, at=T0.replace(minute=5)),
            new_event(lifecycle("training.started", job="old"), at=T0.replace(minute=9)),
            new_event(fresh, at=T0.replace(minute=7)),
        ]
        with commits_counted(engine) as commits:
            results = await write_all(writer, news)
    assert len(commits) == 1
    answers = [(r.event_id, r.duplicate) for r in results if isinstance(r, WriteResult)]
    assert answers == [
        (news[0].id, False),
        (first.event_id, True),
        (news[0].id, True),
        (first.event_id, True),
        (news[0].id, True),
    ]
    async with engine.connect() as conn:
        counts = dict(
            (row.id, (row.duplicate_count, row.last_duplicate_at))
            for row in await conn.execute(
                sa.select(EventRow.id, EventRow.duplicate_count, EventRow.last_duplicate_at)
            )
        )
    assert counts[news[0].id] == (2, T0.replace(minute=7))
    assert counts[first.event_id] == (2, T0.replace(minute=9))
    assert await count_rows(engine, DeliveryRow) == 2  # one per stored event, none per copy


def naive_time(new: NewEvent) -> NewEvent:
    """A row whose value the store refuses before it reaches the server (a bug in one row)."""
    return dataclasses.replace(new, received_at=datetime(2025, 11, 8, 14, 0))


def too_long_source(new: NewEvent) -> NewEvent:
    """A row PostgreSQL itself refuses (varchar(20)); SQLite does not enforce lengths."""
    return dataclasses.replace(new, source="x" * 100)


async def assert_bad_row_fails_alone(engine: AsyncEngine, spoil: Any) -> None:
    """Five writes in one batch, the third spoiled: the batch is retried row by row, the others
    are stored and answered, the bad one alone gets `StoreUnavailable`."""
    writer = writer_for(engine)
    news = [new_event(lifecycle("training.started", job=f"job-{n}")) for n in range(5)]
    news[2] = spoil(news[2])
    async with writer.running():
        with commits_counted(engine) as commits:
            results = await write_all(writer, news)
    assert isinstance(results[2], StoreUnavailable)
    assert not isinstance(results[2], Overloaded)
    good = [r for index, r in enumerate(results) if index != 2]
    assert [r.event_id for r in good if isinstance(r, WriteResult)] == [
        new.id for index, new in enumerate(news) if index != 2
    ]
    assert len(commits) == 4  # the failed batch rolled back; then one commit per good row
    assert await count_rows(engine, EventRow) == 4
    assert await count_rows(engine, JobRow) == 4


async def test_row_with_a_bad_value_fails_only_its_own_write(engine: AsyncEngine) -> None:
    """A value no driver can bind (a bug in one row) does not fail its batch."""
    await assert_bad_row_fails_alone(engine, naive_time)


@pytest.mark.postgresql
async def test_row_the_server_refuses_fails_only_its_own_write(
    postgresql_engine: AsyncEngine,
) -> None:
    """A row PostgreSQL itself refuses (a DataError from the server) does not fail its batch."""
    await assert_bad_row_fails_alone(postgresql_engine, too_long_source)


async def test_full_queue_is_refused_at_once(engine: AsyncEngine) -> None:
    """With room for two waiting writes, the third and later are `Overloaded` without waiting;
    the two queued ones are stored."""
    writer = writer_for(engine, queue_limit=2)
    news = [new_event(lifecycle("training.started", job=f"job-{n}")) for n in range(5)]
    async with writer.running():
        results = await write_all(writer, news)
    assert [type(r).__name__ for r in results] == [
        "WriteResult",
        "WriteResult",
        "Overloaded",
        "Overloaded",
        "Overloaded",
    ]
    assert await count_rows(engine, EventRow) == 2


async def test_shutdown_drains_what_is_queued(engine: AsyncEngine) -> None:
    """Writes queued when the writer stops are committed and answered; later ones are refused."""
    writer = writer_for(engine, batch_limit=3)
    news = [new_event(lifecycle("training.started", job=f"job-{n}")) for n in range(10)]
    async with writer.running():
        tasks = [asyncio.create_task(writer.write(new)) for new in news]
        await asyncio.sleep(0)  # every write is queued; none is committed yet
    results = await asyncio.gather(*tasks)
    assert [r.event_id for r in results] == [new.id for new in news]
    assert await count_rows(engine, EventRow) == 10
    with pytest.raises(StoreUnavailable, match="not running"):
        await writer.write(new_event(lifecycle("training.started", job="late")))


async def test_sender_hanging_up_does_not_lose_the_batch(engine: AsyncEngine) -> None:
    """A cancelled wait (the client went away) leaves its row and the rest of the batch stored."""
    writer = writer_for(engine)
    news = [new_event(lifecycle("training.started", job=f"job-{n}")) for n in range(3)]
    async with writer.running():
        tasks = [asyncio.create_task(writer.write(new)) for new in news]
        await asyncio.sleep(0)
        tasks[1].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert await count_rows(engine, EventRow) == 3


@contextmanager
def session_killed_on_insert(engine: AsyncEngine, times: int) -> Iterator[list[int]]:
    """PostgreSQL ends our own session (pg_terminate_backend) just before the batch's statement
    after its INSERT of events (the one that also inserts the deliveries), `times` times: the
    connection drops in the middle of a real transaction."""
    kills: list[int] = []

    def before(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("WITH repeated AS") and len(kills) < times:
            kills.append(1)
            conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")

    sa.event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield kills
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", before)


@pytest.mark.postgresql
async def test_connection_dropped_mid_batch_is_retried_once(postgresql_engine: AsyncEngine) -> None:
    """The batch in flight when its connection dies is rolled back by the server and written
    again on a fresh connection: every write is answered 2xx-worthy, each row stored once."""
    writer = writer_for(postgresql_engine)
    news = [new_event(lifecycle("training.started", job=f"job-{n}")) for n in range(6)]
    async with writer.running():
        with session_killed_on_insert(postgresql_engine, times=1) as kills:
            results = await write_all(writer, news)
    assert kills == [1]
    assert all(isinstance(r, WriteResult) and not r.duplicate for r in results), results
    assert await count_rows(postgresql_engine, EventRow) == 6
    assert await count_rows(postgresql_engine, DeliveryRow) == 6


@pytest.mark.postgresql
async def test_store_going_away_fails_the_whole_batch(postgresql_engine: AsyncEngine) -> None:
    """When the store stays away, every write of the batch gets `StoreUnavailable`, none is
    stored, and the rows are not retried one by one against a dead store."""
    writer = writer_for(postgresql_engine)
    news = [new_event(lifecycle("training.started", job=f"job-{n}")) for n in range(6)]
    async with writer.running():
        with session_killed_on_insert(postgresql_engine, times=100) as kills:
            results = await write_all(writer, news)
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert len(kills) == 2  # the batch and its one retry on a fresh connection
    assert await count_rows(postgresql_engine, EventRow) == 0


@contextmanager
def statements_run(engine: AsyncEngine) -> Iterator[list[str]]:
    """The first words of every statement sent to the database while the block runs."""
    seen: list[str] = []

    def before(_conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()[:3]))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", before)


async def test_a_batch_runs_each_statement_once(engine: AsyncEngine) -> None:
    """Thirty deliveries in one batch (ten jobs moved twice, repeats, events of no job) cost one
    statement of each kind, however many rows each carries: the decided job moves and fan-out
    are bound as rows, never run per event."""
    news = [
        new_event(lifecycle(name, job=f"job-{n}"), at=T0)
        for name in ("training.started", "training.completed")
        for n in range(10)
    ]
    news += [dataclasses.replace(new, id=f"evt_copy_{n}") for n, new in enumerate(news[:5])]
    news += [new_event({"event": "usage.threshold_reached", "id": f"u-{n}"}) for n in range(5)]
    writer = writer_for(engine)
    async with writer.running():
        with statements_run(engine) as statements:
            results = await write_all(writer, news)
    assert all(isinstance(r, WriteResult) for r in results), results
    # SQLite's BEGIN IMMEDIATE and delivery numbering.
    dialect_only = ("BEGIN IMMEDIATE", "SELECT coalesce(max(deliveries.seq)")
    if engine.dialect.name == "postgresql":
        # The repeats' counts and ids, the tombstones, the new jobs, the deliveries and the
        # workers' wake-up in one statement; then the moves of the jobs that were there.
        expected = ["INSERT INTO events", "WITH repeated AS", "UPDATE jobs SET"]
    else:
        expected = [
            "INSERT INTO events",
            "SELECT dedup_tombstones.dedup_key, dedup_tombstones.event_id",
            "UPDATE events SET",  # the repeats' counts
            "INSERT INTO jobs",
            "UPDATE jobs SET",  # forward moves and fills
            "INSERT INTO deliveries",
        ]
    assert [s for s in statements if not s.startswith(dialect_only)] == expected
    assert len(statements) <= 6 + 2
    assert await count_rows(engine, JobRow) == 10
    assert await count_rows(engine, DeliveryRow) == 25


async def test_replay_of_a_purged_event_in_a_batch_with_its_job(engine: AsyncEngine) -> None:
    """A batch holding a replay of a purged job's first event and a new event of that job: the
    replay is answered as a duplicate of the purged event and queues nothing, and the new event
    still creates the job (the replay would have) and gets its deliveries."""
    replay = new_event(lifecycle("training.started", job="job-p"), at=T0)
    later = new_event(lifecycle("training.completed", job="job-p"), at=T0.replace(minute=5))
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(DEDUP_TOMBSTONES).values(
                dedup_key=replay.event.dedup_key,
                event_id="evt_purged",
                received_at=T0,
                purged_at=T0,
            )
        )
    writer = writer_for(engine)
    async with writer.running():
        results = await write_all(writer, [replay, later])
    assert results == [WriteResult("evt_purged", True), WriteResult(later.id, False)]
    async with engine.connect() as conn:
        events = (await conn.execute(sa.select(EventRow.id))).scalars().all()
        jobs = (await conn.execute(sa.select(JobRow.llmtune_job_id, JobRow.status))).all()
        queued = (await conn.execute(sa.select(DeliveryRow.event_id))).scalars().all()
    assert events == [later.id]
    assert jobs == [("job-p", "completed")]
    assert queued
    assert set(queued) == {later.id}
