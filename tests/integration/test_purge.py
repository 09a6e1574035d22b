"""`purge_batch` on SQLite and PostgreSQL, through the service's own engine (so SQLite has
`PRAGMA foreign_keys=ON`): old events go, and their deliveries, attempts and inference runs with
them by ON DELETE CASCADE; recent events, events with a delivery still to make, and jobs stay.
Deleted events leave their dedup keys as tombstones, which the purge deletes after the dedup
retention (the command's loop, with the clock passed in)."""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.clock import FakeClock
from service.commands.progress import Progress
from service.commands.purge import Tally, cutoffs, purge
from service.ids import new_id
from service.store.db import Database
from service.store.purge import purge_batch
from service.store.tables import (
    ATTEMPTS,
    DEDUP_TOMBSTONES,
    DELIVERIES,
    EVENTS,
    INFERENCE_RUNS,
    JOBS,
)
from tests.helpers import event_row, single_engine_database

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=90)
OLD = CUTOFF - timedelta(days=1)
RECENT = NOW - timedelta(days=1)
DEDUP_CUTOFF = NOW - timedelta(days=400)
_seq = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Totals:
    """What a whole purge did, summed over its batches."""

    deleted: int
    deliveries: int
    kept: int
    batches: int


@pytest.fixture
def db(engine: AsyncEngine) -> Database:
    return single_engine_database(engine)


async def seed(engine: AsyncEngine, at: datetime, statuses: tuple[str, ...], runs: int = 1) -> str:
    """An event received `at`, one delivery per status (each with one attempt), and `runs`
    inference runs; the event's id."""
    event_id = new_id("evt")
    async with engine.begin() as connection:
        await connection.execute(sa.insert(EVENTS).values(event_row(event_id, received_at=at)))
        for n, status in enumerate(statuses):
            delivery_id = new_id("dlv")
            await connection.execute(
                sa.insert(DELIVERIES).values(
                    id=delivery_id,
                    event_id=event_id,
                    route=f"route-{n}",
                    handler="log",
                    job_id="job-1",
                    seq=next(_seq),
                    status=status,
                    next_attempt_at=at,
                    created_at=at,
                    updated_at=at,
                )
            )
            await connection.execute(
                sa.insert(ATTEMPTS).values(
                    delivery_id=delivery_id,
                    number=1,
                    started_at=at,
                    duration_ms=12.0,
                    outcome="ok",
                )
            )
        smoke = new_id("dlv")  # inference_runs.delivery_id refers to nothing; events do
        for index in range(runs):
            await connection.execute(
                sa.insert(INFERENCE_RUNS).values(
                    id=new_id("run"),
                    delivery_id=smoke,
                    prompt_index=index,
                    event_id=event_id,
                    job_id="job-1",
                    route="smoke",
                    model="ft-model-1",
                    prompt="hello",
                    status="succeeded",
                    created_at=at,
                )
            )
    return event_id


async def add_job(engine: AsyncEngine) -> None:
    """One job row, as old as the old events."""
    async with engine.begin() as connection:
        await connection.execute(
            sa.insert(JOBS).values(
                id=new_id("job"),
                llmtune_job_id="job-1",
                status="completed",
                created_at=OLD,
                updated_at=OLD,
            )
        )


async def counts(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    """Per stored event id: how many deliveries, attempts and inference runs it has."""
    async with engine.connect() as connection:
        events = {event_id for (event_id,) in await connection.execute(sa.select(EVENTS.c.id))}
        found = {event_id: {"deliveries": 0, "attempts": 0, "runs": 0} for event_id in events}
        # Every child row is counted, orphans too: a cascade that did not happen shows here.
        queries = {
            "deliveries": sa.select(DELIVERIES.c.event_id),
            "attempts": sa.select(DELIVERIES.c.event_id).join(
                ATTEMPTS, ATTEMPTS.c.delivery_id == DELIVERIES.c.id
            ),
            "runs": sa.select(INFERENCE_RUNS.c.event_id),
        }
        for kind, query in queries.items():
            for (event_id,) in await connection.execute(query):
                found.setdefault(event_id, {"deliveries": 0, "attempts": 0, "runs": 0})
                found[event_id][kind] += 1
        orphan_attempts = await connection.scalar(
            sa.select(sa.func.count())
            .select_from(ATTEMPTS)
            .where(~ATTEMPTS.c.delivery_id.in_(sa.select(DELIVERIES.c.id)))
        )
        assert orphan_attempts == 0
    return found


async def purge_all(db: Database, *, limit: int, dry_run: bool = False) -> Totals:
    """Batch after batch from the oldest, as the command does, until no old event is left."""
    deleted = deliveries = kept = batches = 0
    after: tuple[datetime, str] | None = None
    while True:
        work = partial(
            purge_batch,
            cutoff=CUTOFF,
            after=after,
            limit=limit,
            dry_run=dry_run,
            now=NOW,
            dedup_cutoff=DEDUP_CUTOFF,
        )
        batch = await (db.read if dry_run else db.write)(work)
        batches += 1
        deleted, deliveries, kept = (
            deleted + batch.deleted,
            deliveries + batch.deliveries,
            kept + batch.kept,
        )
        if batch.last is None or batch.scanned < limit:
            return Totals(deleted, deliveries, kept, batches)
        after = batch.last


async def test_old_events_go_with_their_children(engine: AsyncEngine, db: Database) -> None:
    """Old events with succeeded or dead deliveries, or none, are deleted with their
    deliveries, attempts and inference runs; a recent event and the job stay whole."""
    await seed(engine, OLD, ("succeeded", "dead"), runs=2)
    await seed(engine, OLD - timedelta(days=300), ("dead",))
    await seed(engine, OLD, ())
    recent = await seed(engine, RECENT, ("succeeded",))
    await add_job(engine)

    assert await purge_all(db, limit=500) == Totals(deleted=3, deliveries=3, kept=0, batches=1)
    assert await counts(engine) == {recent: {"deliveries": 1, "attempts": 1, "runs": 1}}
    async with engine.connect() as connection:
        assert await connection.scalar(sa.select(sa.func.count()).select_from(JOBS)) == 1


@pytest.mark.parametrize("status", ["pending", "in_flight", "retrying"])
async def test_an_unfinished_delivery_keeps_its_event(
    engine: AsyncEngine, db: Database, status: str
) -> None:
    """An old event with a delivery still to make stays whole and is counted as kept, even
    when its other deliveries are finished."""
    kept = await seed(engine, OLD, ("succeeded", status, "dead"))
    await seed(engine, OLD, ("dead",))

    assert await purge_all(db, limit=500) == Totals(deleted=1, deliveries=1, kept=1, batches=1)
    assert await counts(engine) == {kept: {"deliveries": 3, "attempts": 3, "runs": 1}}


async def test_only_events_before_the_cutoff_go(engine: AsyncEngine, db: Database) -> None:
    """Older than is strict: an event received at the cutoff itself stays."""
    at_cutoff = await seed(engine, CUTOFF, ("succeeded",))
    await seed(engine, CUTOFF - timedelta(microseconds=1), ("succeeded",))

    assert await purge_all(db, limit=500) == Totals(deleted=1, deliveries=1, kept=0, batches=1)
    assert set(await counts(engine)) == {at_cutoff}


async def seed_many(engine: AsyncEngine) -> tuple[set[str], set[str]]:
    """Seven old events, in pairs that share a received_at, the 1st and 4th with a pending
    delivery; one recent. The ids that must stay, and those that must go."""
    stay: set[str] = set()
    go: set[str] = set()
    for i in range(7):
        at = OLD - timedelta(minutes=10) + timedelta(minutes=i // 2)
        pending = i in (0, 3)
        event_id = await seed(engine, at, ("succeeded", "pending" if pending else "dead"))
        (stay if pending else go).add(event_id)
    stay.add(await seed(engine, RECENT, ("succeeded",)))
    return stay, go


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8])
async def test_batches_smaller_than_the_total_delete_everything(
    engine: AsyncEngine, db: Database, limit: int
) -> None:
    """Whatever the batch size, the keyset walks past kept events and events sharing a
    received_at, so every old event without unfinished deliveries goes, in ⌈7/size⌉ batches
    (plus an empty one when the last batch was full)."""
    stay, _go = await seed_many(engine)

    totals = await purge_all(db, limit=limit)
    assert (totals.deleted, totals.deliveries, totals.kept) == (5, 10, 2)
    assert totals.batches == 7 // limit + 1
    assert set(await counts(engine)) == stay


async def test_dry_run_deletes_nothing_and_counts_the_same(
    engine: AsyncEngine, db: Database
) -> None:
    """A dry run changes no row and reports what the real purge then does."""
    stay, go = await seed_many(engine)
    before = await counts(engine)

    dry = await purge_all(db, limit=2, dry_run=True)
    assert await counts(engine) == before
    assert set(before) == stay | go

    assert await purge_all(db, limit=2) == dry == Totals(5, 10, 2, batches=4)
    assert set(await counts(engine)) == stay


async def test_nothing_old(engine: AsyncEngine, db: Database) -> None:
    """With no event older than the cutoff a single empty batch ends the purge."""
    recent = await seed(engine, RECENT, ("succeeded",))

    assert await purge_all(db, limit=500) == Totals(0, 0, 0, batches=1)
    assert set(await counts(engine)) == {recent}


async def tombstones(engine: AsyncEngine) -> dict[str, tuple[str, datetime, datetime]]:
    """Each stored tombstone: dedup key -> (event id, received at, purged at)."""
    async with engine.connect() as connection:
        rows = await connection.execute(sa.select(DEDUP_TOMBSTONES))
        return {key: (event_id, at, purged) for key, event_id, at, purged in rows}


async def dedup_keys(engine: AsyncEngine, event_ids: set[str]) -> dict[str, str]:
    """event id -> its dedup key, for these stored events."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.select(EVENTS.c.id, EVENTS.c.dedup_key).where(EVENTS.c.id.in_(event_ids))
        )
        return {event_id: key for event_id, key in rows}


async def test_deleted_events_leave_their_dedup_keys(engine: AsyncEngine, db: Database) -> None:
    """Each deleted event leaves a tombstone (key, id, received_at, purged_at = now); a kept or
    recent event leaves none, nor does one received before the dedup cutoff, nor a dry run."""
    gone = {await seed(engine, OLD, ("succeeded",)), await seed(engine, OLD, ("dead",))}
    ancient = await seed(engine, DEDUP_CUTOFF - timedelta(seconds=1), ("succeeded",))
    kept = await seed(engine, OLD, ("pending",))
    await seed(engine, RECENT, ("succeeded",))
    keys = await dedup_keys(engine, gone)

    dry = await purge_all(db, limit=500, dry_run=True)
    assert await tombstones(engine) == {}
    assert await purge_all(db, limit=2) == Totals(deleted=3, deliveries=3, kept=1, batches=3)
    assert await tombstones(engine) == {keys[event_id]: (event_id, OLD, NOW) for event_id in gone}
    assert ancient not in await counts(engine)
    assert kept in await counts(engine)
    assert dry == Totals(deleted=3, deliveries=3, kept=1, batches=1)


async def tombstones_by_clock(db: Database, clock: FakeClock, *, limit: int, dry_run: bool) -> int:
    """Run the purge command's loop at the clock's now with a 400-day dedup retention; how many
    tombstones it deleted (or would)."""
    tally = Tally()
    await purge(
        db,
        cuts=cutoffs(clock.now(), age=timedelta(days=90), dedup_days=400),
        batch_size=limit,
        dry_run=dry_run,
        tally=tally,
        progress=Progress("purge", io.StringIO()),
    )
    return tally.tombstones


@pytest.mark.parametrize("limit", [1, 2, 500])
async def test_tombstones_go_after_the_retention(
    engine: AsyncEngine, db: Database, limit: int
) -> None:
    """A tombstone stays until DEDUP_RETENTION_DAYS after its event was received, then the
    purge deletes it (in batches of any size) and counts it; a dry run only counts."""
    received = [OLD - timedelta(days=days) for days in (30, 20, 10)]
    for at in received:
        await seed(engine, at, ("succeeded",))
    clock = FakeClock(NOW)
    assert await tombstones_by_clock(db, clock, limit=limit, dry_run=False) == 0
    assert len(await tombstones(engine)) == 3

    # Two of the three events were received more than 400 days ago; the third exactly 400.
    clock.advance(received[2] + timedelta(days=400) - NOW)
    assert await tombstones_by_clock(db, clock, limit=limit, dry_run=True) == 2
    assert len(await tombstones(engine)) == 3
    assert await tombstones_by_clock(db, clock, limit=limit, dry_run=False) == 2
    assert [at for _, at, _ in (await tombstones(engine)).values()] == [received[2]]

    clock.advance(timedelta(seconds=1))
    assert await tombstones_by_clock(db, clock, limit=limit, dry_run=False) == 1
    assert await tombstones(engine) == {}
