"""A signed body replayed after `purge` removed its event: still a duplicate, on both databases.

The webhook goes through the whole app in process (a `FakeClock` says when it arrives); the purge
is the command's own loop (`service.commands.purge.purge`) on the test engine.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.clock import FakeClock
from service.commands.progress import Progress
from service.commands.purge import Tally, cutoffs, purge
from service.store.tables import DEDUP_TOMBSTONES, DELIVERIES, EVENTS, JOBS
from tests.helpers import make_settings, post_webhook, running_app, single_engine_database, w3_body

T_STORED = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
AGE = timedelta(days=90)


async def count(engine: AsyncEngine, table: sa.Table) -> int:
    async with engine.connect() as connection:
        return (await connection.scalar(sa.select(sa.func.count()).select_from(table))) or 0


async def purge_at(engine: AsyncEngine, now: datetime, *, dedup_days: int = 400) -> Tally:
    """Run the purge loop as the command does at `now`, deleting events older than 90 days."""
    tally = Tally()
    await purge(
        single_engine_database(engine),
        cuts=cutoffs(now, age=AGE, dedup_days=dedup_days),
        batch_size=500,
        dry_run=False,
        tally=tally,
        progress=Progress("purge", io.StringIO()),
    )
    return tally


async def finish_deliveries(engine: AsyncEngine) -> None:
    """As a worker would have: every delivery made, so purge may take the event."""
    async with engine.begin() as connection:
        await connection.execute(sa.update(DELIVERIES).values(status="succeeded"))


@pytest.mark.parametrize(
    "event", ["training.completed", "training.started", "model.deployed", "something.unknown"]
)
async def test_replay_after_purge_is_a_duplicate(
    engine: AsyncEngine, db_url: str, event: str
) -> None:
    """The purged event's body, signed as before, is answered `duplicate: true` with the
    original event id; no event, delivery or job move is stored for it."""
    clock = FakeClock(T_STORED)
    body = w3_body(event, job_id="job-replayed")
    settings = make_settings(db_url)
    async with running_app(settings, engine, clock=clock) as client:
        first = await post_webhook(client, body)
        assert first.status_code == 200, first.text
        assert first.json()["duplicate"] is False
        original = first.json()["eventId"]
        await finish_deliveries(engine)
        jobs_before = await count(engine, JOBS)

        clock.advance(AGE + timedelta(days=1))
        tally = await purge_at(engine, clock.now())
        assert (tally.deleted, await count(engine, EVENTS)) == (1, 0)
        assert await count(engine, DEDUP_TOMBSTONES) == 1

        replay = await post_webhook(client, body)
        assert replay.status_code == 200, replay.text
        assert replay.json()["duplicate"] is True
        assert replay.json()["eventId"] == original
        assert await count(engine, EVENTS) == 0
        assert await count(engine, DELIVERIES) == 0
        assert await count(engine, JOBS) == jobs_before

        # Another body is not caught by the tombstone: it is new and fans out as usual.
        other = await post_webhook(client, w3_body("training.started", job_id="job-other"))
        assert other.json()["duplicate"] is False
        assert (await count(engine, EVENTS), await count(engine, DELIVERIES)) == (1, 1)


async def test_replay_after_the_tombstone_expired_is_new(engine: AsyncEngine, db_url: str) -> None:
    """Once DEDUP_RETENTION_DAYS have passed since the original arrived, purge forgets its key,
    and the same body is stored and fanned out as a new event again."""
    clock = FakeClock(T_STORED)
    body = w3_body("training.completed", job_id="job-expired")
    async with running_app(make_settings(db_url), engine, clock=clock) as client:
        first = (await post_webhook(client, body)).json()
        await finish_deliveries(engine)
        clock.advance(AGE + timedelta(days=1))
        await purge_at(engine, clock.now(), dedup_days=400)

        clock.advance(timedelta(days=400) - AGE)
        tally = await purge_at(engine, clock.now(), dedup_days=400)
        assert tally.tombstones == 1
        assert await count(engine, DEDUP_TOMBSTONES) == 0

        again = (await post_webhook(client, body)).json()
        assert again["duplicate"] is False
        assert again["eventId"] != first["eventId"]
        assert (await count(engine, EVENTS), await count(engine, DELIVERIES)) == (1, 1)
