"""`store.console_queries` on SQLite and PostgreSQL: delivery counts per event and per status,
events per clock hour over the last day, and a job's event bodies in order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.store import console_queries
from service.store.console_queries import HourCount, StatusCount
from service.store.db import Database
from service.store.tables import DELIVERIES, EVENTS
from tests.helpers import event_row, single_engine_database

NOW = datetime(2026, 3, 2, 10, 25, tzinfo=UTC)
_seq = itertools.count(1)


@pytest.fixture
def db(engine: AsyncEngine) -> Database:
    return single_engine_database(engine)


async def seed(
    db: Database,
    events: dict[str, datetime],
    statuses: dict[str, list[str]] | None = None,
    job_id: str = "job-1",
) -> None:
    """Events received at the given times, each with deliveries of the given statuses."""

    async def insert(session: AsyncSession) -> None:
        for event_id, received in events.items():
            row = event_row(event_id, received_at=received, job_id=job_id)
            row["raw_body"] = b'{"n": "' + event_id.encode() + b'"}'
            await session.execute(sa.insert(EVENTS).values(row))
            for index, status in enumerate((statuses or {}).get(event_id, [])):
                await session.execute(
                    sa.insert(DELIVERIES).values(
                        id=f"dlv_{event_id}_{index}",
                        event_id=event_id,
                        route=f"r{index}",
                        handler="log",
                        job_id=job_id,
                        seq=next(_seq),
                        status=status,
                        next_attempt_at=received,
                        created_at=received,
                        updated_at=received,
                    )
                )

    await db.write(insert)


class TestDeliveryCounts:
    async def test_counts_per_event_and_status(self, db: Database) -> None:
        """Each asked-for event gets its statuses counted, in status order, none for zero;
        an event without deliveries is absent, and one not asked for is not counted."""
        await seed(
            db,
            {"evt_a": NOW, "evt_b": NOW, "evt_c": NOW, "evt_d": NOW},
            {
                "evt_a": ["dead", "succeeded", "succeeded", "retrying"],
                "evt_b": ["pending"],
                "evt_d": ["dead"],
            },
        )
        counts = await db.read(
            lambda s: console_queries.delivery_counts(s, ["evt_a", "evt_b", "evt_c"])
        )
        assert counts == {
            "evt_a": (
                StatusCount("retrying", 1),
                StatusCount("succeeded", 2),
                StatusCount("dead", 1),
            ),
            "evt_b": (StatusCount("pending", 1),),
        }

    async def test_no_ids_no_query(self, db: Database) -> None:
        """An empty page asks for nothing."""
        assert await db.read(lambda s: console_queries.delivery_counts(s, [])) == {}

    async def test_by_status_includes_zeros(self, db: Database) -> None:
        """Every status is listed, zero or not."""
        await seed(db, {"evt_a": NOW}, {"evt_a": ["dead", "dead", "succeeded"]})
        counts = await db.read(console_queries.deliveries_by_status)
        assert counts == (
            StatusCount("pending", 0),
            StatusCount("in_flight", 0),
            StatusCount("retrying", 0),
            StatusCount("succeeded", 1),
            StatusCount("dead", 2),
        )


class TestEventsPerHour:
    async def test_buckets_by_clock_hour(self, db: Database) -> None:
        """24 clock hours ending with the current one; an event on an hour's first instant
        counts in that hour, and one older than the window or in the future not at all."""
        this_hour = NOW.replace(minute=0)
        await seed(
            db,
            {
                "evt_now": NOW,
                "evt_top": this_hour,
                "evt_prev": this_hour - timedelta(microseconds=1),
                "evt_first": this_hour - timedelta(hours=23),
                "evt_old": this_hour - timedelta(hours=23, microseconds=1),
                "evt_future": this_hour + timedelta(hours=1),
            },
        )
        hours = await db.read(lambda s: console_queries.events_per_hour(s, now=NOW))
        assert len(hours) == 24
        assert hours[0] == HourCount(this_hour - timedelta(hours=23), 1)
        assert hours[-2] == HourCount(this_hour - timedelta(hours=1), 1)
        assert hours[-1] == HourCount(this_hour, 2)
        assert sum(h.count for h in hours) == 4

    async def test_empty(self, db: Database) -> None:
        """No events: 24 zeros."""
        hours = await db.read(lambda s: console_queries.events_per_hour(s, now=NOW))
        assert [h.count for h in hours] == [0] * 24


class TestJobEventBodies:
    async def test_oldest_first_of_that_job_only(self, db: Database) -> None:
        """A job's events in the order received, with their bodies; other jobs' left out."""
        await seed(db, {"evt_2": NOW, "evt_1": NOW - timedelta(minutes=1)})
        await seed(db, {"evt_x": NOW}, job_id="job-2")
        found = await db.read(lambda s: console_queries.job_event_bodies(s, "job-1", db.sealer))
        assert [(e.id, e.raw_body) for e in found] == [
            ("evt_1", b'{"n": "evt_1"}'),
            ("evt_2", b'{"n": "evt_2"}'),
        ]
        assert found[0].received_at == NOW - timedelta(minutes=1)
