"""The worker's attempt recorder on SQLite and PostgreSQL: many results in one transaction, the
attempt-number guard inside a batch, the queue written on the way out, a refused row alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.clock import FakeClock
from service.dispatch.results import AttemptRecorder
from service.handlers.base import Delivery, Handler, Ok, Outcome
from service.routing import Subscription
from service.services import Services
from service.store import outbox
from service.store.db import StoreUnavailable
from service.store.outbox import Claimed, Finish
from service.store.tables import AttemptRow, DeliveryRow
from tests.helpers import w3_body
from tests.wiring import bootstrap_for_tests

T0 = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


class Untouched:
    """A handler the recorder tests never call (no worker runs here)."""

    name: ClassVar[str] = "untouched"

    async def handle(self, delivery: Delivery) -> Outcome:
        return Ok("never called")


class CountingClock(FakeClock):
    """A fake clock that counts its readings: the recorder reads it once per transaction."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.readings = 0

    def now(self) -> datetime:
        self.readings += 1
        return super().now()


@dataclass
class Bench:
    svc: Services
    clock: CountingClock
    recorder: AttemptRecorder

    async def post(self, job: str) -> None:
        body = w3_body("training.started", job)
        await self.svc.ingest.accept(body, [], source="test", trusted=True)

    async def claim(self, limit: int = 10) -> list[Claimed]:
        now = self.clock.now()
        return await self.svc.db.write_on_connection(
            lambda conn: outbox.claim(conn, now=now, lease=LEASE, limit=limit)
        )

    async def rows(self) -> dict[str, DeliveryRow]:
        async with self.svc.db.sessions() as session:
            return {row.id: row for row in await session.scalars(sa.select(DeliveryRow))}

    async def attempts(self) -> set[tuple[str, int, str]]:
        async with self.svc.db.sessions() as session:
            rows = await session.scalars(sa.select(AttemptRow))
            return {(row.delivery_id, row.number, row.outcome) for row in rows}


@pytest.fixture
async def bench(engine: AsyncEngine) -> AsyncIterator[Bench]:
    """Ingest on the test database, and a recorder on its own counting clock."""
    clock = CountingClock(T0)
    route = Subscription("hook", "untouched", ("training.*",))
    handlers: dict[str, Handler] = {"hook": Untouched()}
    async with bootstrap_for_tests(engine, routes=[route], handlers=handlers, clock=clock) as svc:
        yield Bench(svc, clock, AttemptRecorder(svc.db, clock))


def _result(status: str, outcome: str, detail: str | None = None) -> Finish:
    retry_at = T0 + timedelta(hours=1) if status == "retrying" else None
    return Finish(status, retry_at, outcome, detail, T0, 1.0)


async def test_a_stale_result_in_a_batch_does_not_overwrite_the_newer_attempt(
    bench: Bench,
) -> None:
    """Two claims of one delivery across a lease expiry, the older finishing last, in one batch
    with others: every other result is applied, the stale one writes nothing."""
    await bench.post("job-a")
    [stale] = await bench.claim()
    bench.clock.advance(LEASE + timedelta(seconds=1))
    await bench.post("job-b")
    await bench.post("job-c")
    fresh, other, retried = await bench.claim()
    assert (stale.id, stale.attempt, fresh.id, fresh.attempt) == (fresh.id, 1, stale.id, 2)
    batch = [
        (fresh, _result("succeeded", "ok", "fine")),
        (other, _result("succeeded", "ok", "fine")),
        (retried, _result("retrying", "retry", "HTTP 503")),
        (stale, _result("dead", "fail", "stale says dead")),
    ]
    readings = bench.clock.readings
    async with bench.recorder.running():
        applied = await asyncio.gather(*(bench.recorder.record(c, r) for c, r in batch))
    assert applied == [True, True, True, False]
    assert bench.clock.readings == readings + 1  # one transaction wrote them all
    rows = await bench.rows()
    assert (rows[fresh.id].status, rows[fresh.id].attempts) == ("succeeded", 2)
    assert (rows[retried.id].status, rows[retried.id].last_error) == ("retrying", "HTTP 503")
    assert rows[other.id].status == "succeeded"
    assert all(row.lease_expires_at is None for row in rows.values())
    assert await bench.attempts() == {
        (fresh.id, 2, "ok"),
        (other.id, 1, "ok"),
        (retried.id, 1, "retry"),
    }


async def test_queued_results_are_written_before_the_recorder_stops(bench: Bench) -> None:
    """Results still queued when `running()` ends are committed on the way out."""
    for job in ("job-a", "job-b", "job-c"):
        await bench.post(job)
    claimed = await bench.claim()
    async with bench.recorder.running():
        waiting = [
            asyncio.create_task(bench.recorder.record(item, _result("succeeded", "ok")))
            for item in claimed
        ]
        await asyncio.sleep(0)  # queued, not yet written
    assert [task.result() for task in waiting] == [True] * 3
    assert {row.status for row in (await bench.rows()).values()} == {"succeeded"}


async def test_a_refused_result_fails_alone(bench: Bench) -> None:
    """A result the database refuses (text it cannot encode) costs only its own attempt: the
    rest of its batch is written one by one."""
    for job in ("job-a", "job-b", "job-c"):
        await bench.post(job)
    first, bad, last = await bench.claim()
    results = [
        (first, _result("succeeded", "ok")),
        (bad, _result("retrying", "retry", "broken \ud800 text")),
        (last, _result("succeeded", "ok")),
    ]
    async with bench.recorder.running():
        answers = await asyncio.gather(
            *(bench.recorder.record(c, r) for c, r in results), return_exceptions=True
        )
    assert (answers[0], answers[2]) == (True, True)
    assert isinstance(answers[1], StoreUnavailable)
    rows = await bench.rows()
    assert (rows[bad.id].status, rows[bad.id].attempts) == ("in_flight", 1)
    assert await bench.attempts() == {(first.id, 1, "ok"), (last.id, 1, "ok")}


async def test_record_outside_running_is_refused(bench: Bench) -> None:
    """Without its flusher the recorder takes nothing (the lease then brings the attempt back)."""
    await bench.post("job-a")
    [item] = await bench.claim()
    with pytest.raises(StoreUnavailable):
        await bench.recorder.record(item, _result("succeeded", "ok"))
