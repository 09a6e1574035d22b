"""The dispatch worker on SQLite and PostgreSQL: claims, retries, dead letters, leases, order.

Handlers here are small scripted ones (the real handlers are tested against real sinks in their
own modules): these tests are about the queue, not the destinations.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from service.clock import FakeClock, FakeTimer
from service.dispatch.notify import Notifier
from service.dispatch.worker import Worker, WorkerConfig
from service.handlers.base import Delivery, Fail, Handler, Ok, Outcome, Retry
from service.ingest import Ingest
from service.routing import Subscription
from service.store import outbox
from service.store.db import Database
from service.store.tables import AttemptRow, DeliveryRow, EventRow
from tests.helpers import w3_body
from tests.waiting import until
from tests.wiring import bootstrap_for_tests

T0 = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)


@dataclass
class Scripted:
    """A handler that answers from a script (then Ok) and records what it was given."""

    name: ClassVar[str] = "scripted"
    script: list[Outcome] = field(default_factory=list)
    seen: list[Delivery] = field(default_factory=list)
    gate: asyncio.Event | None = None

    async def handle(self, delivery: Delivery) -> Outcome:
        self.seen.append(delivery)
        if self.gate is not None:
            await self.gate.wait()
        return self.script.pop(0) if self.script else Ok("fine")


DEFAULT_TEST_ROUTES = (Subscription("hook", "scripted", ("training.*",), max_attempts=3),)


@dataclass
class Harness:
    db: Database
    clock: FakeClock
    ingest: Ingest
    worker: Worker
    handlers: dict[str, Scripted]
    notifier: WatchedNotifier
    timer: FakeTimer

    async def post(self, event: str = "training.started", job: str = "job-1") -> str:
        accepted = await self.ingest.accept(w3_body(event, job), [], source="test", trusted=True)
        return accepted.event_id

    async def rows(self) -> list[DeliveryRow]:
        async with self.db.sessions() as session:
            stmt = sa.select(DeliveryRow).order_by(DeliveryRow.seq)
            return list((await session.scalars(stmt)).all())

    async def attempts(self) -> list[AttemptRow]:
        async with self.db.sessions() as session:
            stmt = sa.select(AttemptRow).order_by(AttemptRow.started_at, AttemptRow.number)
            return list((await session.scalars(stmt)).all())

    async def events(self) -> list[EventRow]:
        async with self.db.sessions() as session:
            return list((await session.scalars(sa.select(EventRow))).all())


class WatchedNotifier(Notifier):
    """The worker's wake-up signal, telling the test when the worker has gone idle on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()

    async def wait(self) -> None:
        self.waiting.set()
        await super().wait()


@asynccontextmanager
async def _harness(
    engine: AsyncEngine,
    routes: Sequence[Subscription],
    config: WorkerConfig | None,
    timer: FakeTimer,
) -> AsyncIterator[Harness]:
    clock = FakeClock(T0)
    notifier = WatchedNotifier()
    handlers = {route.name: Scripted() for route in routes}
    async with bootstrap_for_tests(
        engine,
        routes=routes,
        handlers=dict[str, Handler](handlers),
        clock=clock,
        worker=config,
        rng=random.Random(7),
        notifier=notifier,
        timer=timer,
    ) as svc:
        yield Harness(svc.db, clock, svc.ingest, svc.worker, handlers, notifier, timer)


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness() -> AsyncIterator[HarnessFactory]:
    """Builds harnesses whose ingest writer runs until the test ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def build(
            engine: AsyncEngine,
            routes: Sequence[Subscription] = DEFAULT_TEST_ROUTES,
            config: WorkerConfig | None = None,
        ) -> Harness:
            return await stack.enter_async_context(_harness(engine, routes, config, FakeTimer()))

        yield build


class TestOutcomes:
    async def test_success_is_recorded_with_its_attempt(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """An Ok answer: the delivery succeeds and one attempt row says so."""
        h = await make_harness(engine)
        event_id = await h.post()
        assert await h.worker.run_until_idle() == 1
        [row] = await h.rows()
        assert (row.status, row.attempts, row.event_id, row.job_id) == (
            "succeeded",
            1,
            event_id,
            "job-1",
        )
        [attempt] = await h.attempts()
        assert (attempt.number, attempt.outcome, attempt.detail) == (1, "ok", "fine")
        [seen] = h.handlers["hook"].seen
        assert (seen.id, seen.attempt, seen.event.type) == (row.id, 1, "training.started")

    async def test_retry_then_success(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """A transient failure is retried when due (not before) and then succeeds."""
        h = await make_harness(engine)
        h.handlers["hook"].script = [Retry("HTTP 503", after=30)]
        await h.post()
        await h.worker.run_until_idle()
        [row] = await h.rows()
        assert (row.status, row.attempts, row.last_error) == ("retrying", 1, "HTTP 503")
        assert row.next_attempt_at == T0 + timedelta(seconds=30)
        assert await h.worker.run_until_idle() == 0  # not due yet
        h.clock.advance(timedelta(seconds=30))
        assert await h.worker.run_until_idle() == 1
        [row] = await h.rows()
        assert (row.status, row.attempts, row.last_error) == ("succeeded", 2, None)
        assert [a.outcome for a in await h.attempts()] == ["retry", "ok"]
        ids = {d.id for d in h.handlers["hook"].seen}
        assert len(ids) == 1  # the same idempotency key on every attempt

    async def test_dead_after_max_attempts_is_announced(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """Retries that run out leave the delivery dead and store a `delivery.dead` event."""
        h = await make_harness(engine)
        h.handlers["hook"].script = [Retry("HTTP 500")] * 3
        await h.post()
        for _ in range(3):
            await h.worker.run_until_idle()
            h.clock.advance(timedelta(hours=12))
        [row] = await h.rows()
        assert (row.status, row.attempts, row.last_error) == ("dead", 3, "HTTP 500")
        assert [a.outcome for a in await h.attempts()] == ["retry", "retry", "dead"]
        dead = [e for e in await h.events() if e.type == "delivery.dead"]
        assert [(e.source, e.job_id) for e in dead] == [("internal", "job-1")]

    async def test_permanent_failure_is_dead_at_once(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """A Fail answer is not retried."""
        h = await make_harness(engine)
        h.handlers["hook"].script = [Fail("HTTP 400: bad")]
        await h.post()
        await h.worker.run_until_idle()
        [row] = await h.rows()
        assert (row.status, row.attempts) == ("dead", 1)

    async def test_no_dead_event_about_a_dead_event(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """A route that also takes `delivery.dead` and fails it does not loop."""
        route = Subscription("all", "scripted", ("*",), max_attempts=1)
        h = await make_harness(engine, [route])
        h.handlers["all"].script = [Fail("no"), Fail("no again")]
        await h.post()
        await h.worker.run_until_idle()
        await h.worker.run_until_idle()
        types = sorted(e.type for e in await h.events())
        assert types == ["delivery.dead", "training.started"]
        assert [r.status for r in await h.rows()] == ["dead", "dead"]

    async def test_crashing_handler_is_retried_not_fatal(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """An exception escaping a handler counts as a transient failure."""
        h = await make_harness(engine)

        async def boom(delivery: Delivery) -> Outcome:
            raise RuntimeError("bug")

        h.handlers["hook"].handle = boom  # type: ignore[method-assign]
        await h.post()
        await h.worker.run_until_idle()
        [row] = await h.rows()
        assert (row.status, row.last_error) == ("retrying", "handler error: RuntimeError")


class TestOrder:
    async def test_later_event_waits_for_earlier_of_same_job(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """`completed` is not delivered while `started` of the same job is still retrying;
        another job's delivery is not held up."""
        h = await make_harness(engine)
        h.handlers["hook"].script = [Retry("HTTP 503", after=60)]
        await h.post("training.started", "job-a")
        await h.post("training.completed", "job-a")
        await h.post("training.started", "job-b")
        await h.worker.run_until_idle()
        order = [(d.event.job_id, d.event.type) for d in h.handlers["hook"].seen]
        assert order == [("job-a", "training.started"), ("job-b", "training.started")]
        h.clock.advance(timedelta(seconds=60))
        await h.worker.run_until_idle()
        order = [(d.event.job_id, d.event.type) for d in h.handlers["hook"].seen]
        assert order[2:] == [("job-a", "training.started"), ("job-a", "training.completed")]

    async def test_dead_predecessor_releases_its_successors(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """Once the earlier delivery is dead, the later one of the job goes out."""
        h = await make_harness(engine)
        h.handlers["hook"].script = [Fail("HTTP 400")]
        await h.post("training.started", "job-a")
        await h.post("training.failed", "job-a")
        await h.worker.run_until_idle()
        assert [r.status for r in await h.rows()] == ["dead", "succeeded"]


class TestLeases:
    async def test_expired_lease_is_claimed_again(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """A worker that vanished mid-attempt: after the lease, another attempt is made."""
        h = await make_harness(engine)
        await h.post()
        now = h.clock.now()
        [first] = await h.db.write(
            lambda s: outbox.claim(s, now=now, lease=timedelta(seconds=60), limit=10)
        )
        assert (
            await h.db.write(
                lambda s: outbox.claim(s, now=now, lease=timedelta(seconds=60), limit=10)
            )
            == []
        )
        h.clock.advance(timedelta(seconds=61))
        assert await h.worker.run_until_idle() == 1
        [row] = await h.rows()
        assert (row.status, row.attempts) == ("succeeded", 2)
        assert first.attempt == 1

    async def test_stale_worker_cannot_overwrite_a_newer_attempt(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """The result of an attempt whose lease was taken over is not recorded."""
        h = await make_harness(engine)
        await h.post()
        lease = timedelta(seconds=60)
        now = h.clock.now()
        [stale] = await h.db.write(lambda s: outbox.claim(s, now=now, lease=lease, limit=1))
        later = now + timedelta(seconds=61)
        [fresh] = await h.db.write(lambda s: outbox.claim(s, now=later, lease=lease, limit=1))
        assert (stale.attempt, fresh.attempt) == (1, 2)
        result = outbox.Finish("dead", None, "fail", "stale says dead", later, 1.0)
        assert not await h.db.write(lambda s: outbox.finish(s, stale, result, now=later))
        [row] = await h.rows()
        assert (row.status, row.attempts) == ("in_flight", 2)
        assert await h.attempts() == []

    async def test_stop_releases_unfinished_attempts(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """On stop, an attempt still running after the grace period is given back, due now."""
        h = await make_harness(engine, config=WorkerConfig(grace_seconds=0.05, poll_seconds=0.01))
        h.handlers["hook"].gate = asyncio.Event()  # never opens
        await h.post()
        stop = asyncio.Event()
        running = asyncio.create_task(h.worker.run(stop))
        await until(lambda: bool(h.handlers["hook"].seen))
        stop.set()
        await running
        [row] = await h.rows()
        assert (row.status, row.attempts, row.lease_expires_at) == ("pending", 0, None)


async def test_concurrent_claims_never_share_a_delivery(
    engine: AsyncEngine, make_harness: HarnessFactory
) -> None:
    """Claims racing on separate connections each get different deliveries."""
    h = await make_harness(engine)
    for index in range(20):
        await h.post("training.started", f"job-{index}")
    now = h.clock.now()
    batches = await asyncio.gather(
        *(
            h.db.write(lambda s: outbox.claim(s, now=now, lease=timedelta(seconds=60), limit=5))
            for _ in range(6)
        )
    )
    ids = [item.id for batch in batches for item in batch]
    assert len(ids) == len(set(ids)) == 20


async def test_wakes_at_once_on_new_work(engine: AsyncEngine, make_harness: HarnessFactory) -> None:
    """A running worker with a long poll interval still delivers promptly when ingest stores."""
    h = await make_harness(engine, config=WorkerConfig(poll_seconds=30))
    stop = asyncio.Event()
    running = asyncio.create_task(h.worker.run(stop))
    # Post only once the worker found nothing and waits for a signal: from here only the
    # wake-up (not the 30 s poll, nor the first claim) can bring the delivery out in time.
    await until(h.notifier.waiting.is_set, within=5, what="the worker goes idle")
    await h.post()
    await until(lambda: bool(h.handlers["hook"].seen), within=5, what="the wake-up delivers")
    stop.set()
    await running
    assert [r.status for r in await h.rows()] == ["succeeded"]


async def test_rate_limit_spaces_calls(engine: AsyncEngine, make_harness: HarnessFactory) -> None:
    """A route with `rate_limit` starts its calls at most that many per second (on the worker's
    timer, a fake one here: the calls are spaced by its sleeps, not by real time)."""
    route = Subscription("slow", "scripted", ("*",), rate_limit=5.0)
    h = await make_harness(engine, [route])
    for index in range(4):
        await h.post("training.started", f"job-{index}")
    started: list[float] = []
    original = h.handlers["slow"].handle

    async def timed(delivery: Delivery) -> Outcome:
        started.append(h.timer.monotonic())
        return await original(delivery)

    h.handlers["slow"].handle = timed  # type: ignore[method-assign]
    await h.worker.run_until_idle()
    assert started == pytest.approx([0.0, 0.2, 0.4, 0.6])


class TestClaimsAhead:
    async def test_a_claim_ahead_whose_lease_ran_short_is_given_back(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """With one handler slot, the second claimed delivery waits; when its turn comes with
        less lease left than an attempt may take, it is given back (then claimed afresh), not
        attempted under the old lease."""
        config = WorkerConfig(concurrency=1, poll_seconds=0.01, attempt_timeout_seconds=30)
        h = await make_harness(engine, config=config)
        gate = h.handlers["hook"].gate = asyncio.Event()
        await h.post("training.started", "job-a")
        await h.post("training.started", "job-b")
        stop = asyncio.Event()
        running = asyncio.create_task(h.worker.run(stop))
        await until(_statuses_are(h, "in_flight", "in_flight"), what="both claimed")
        [first, second] = await h.rows()
        assert first.lease_expires_at == second.lease_expires_at == T0 + timedelta(seconds=60)
        h.clock.advance(timedelta(seconds=31))  # 29 s of the 60 s lease left, 30 s needed
        with capture_logs() as lines:
            gate.set()
            await until(_statuses_are(h, "succeeded", "succeeded"), what="both delivered")
        stop.set()
        await running
        released = [line["delivery_id"] for line in lines if line["event"] == "delivery_released"]
        assert released == [second.id]
        assert [(d.event.job_id, d.attempt) for d in h.handlers["hook"].seen] == [
            ("job-a", 1),
            ("job-b", 1),
        ]
        assert [(a.delivery_id, a.number) for a in await h.attempts()] == [
            (first.id, 1),
            (second.id, 1),
        ]

    async def test_stop_gives_back_claims_not_yet_started_at_once(
        self, engine: AsyncEngine, make_harness: HarnessFactory
    ) -> None:
        """On stop, a delivery claimed ahead but not started is given back without waiting for
        the grace period or calling its handler."""
        config = WorkerConfig(concurrency=1, poll_seconds=0.01, grace_seconds=0.05)
        h = await make_harness(engine, config=config)
        h.handlers["hook"].gate = asyncio.Event()  # never opens
        await h.post("training.started", "job-a")
        await h.post("training.started", "job-b")
        stop = asyncio.Event()
        running = asyncio.create_task(h.worker.run(stop))
        await until(_statuses_are(h, "in_flight", "in_flight"), what="both claimed")
        stop.set()
        await running
        assert [d.event.job_id for d in h.handlers["hook"].seen] == ["job-a"]
        rows = await h.rows()
        assert [(r.status, r.attempts) for r in rows] == [("pending", 0), ("pending", 0)]


def _statuses_are(h: Harness, *expected: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return [row.status for row in await h.rows()] == list(expected)

    return check
