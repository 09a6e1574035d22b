"""The one replay service (admin API and CLI) on SQLite and PostgreSQL: targets, replay of one
event and of a time range, dry runs, retry of dead deliveries, and the wake-up after each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.clock import FakeClock
from service.dispatch.replays import Replays, UnknownRoute
from service.handlers.base import Delivery, Fail, Handler, Ok, Outcome
from service.routing import Subscription
from service.services import Services
from service.store.deliveries import DeliveryFilter
from service.store.events import EventRef
from service.store.listen import listening
from service.store.tables import DeliveryRow
from tests.helpers import w3_body
from tests.wiring import bootstrap_for_tests

T0 = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)
ROUTES = (
    Subscription("hook", "answering", ("training.*",), max_attempts=3),
    Subscription("deploys", "answering", ("model.*",), max_attempts=3),
    Subscription("off", "answering", ("*",), enabled=False),
)


@dataclass
class Answering:
    """A handler that answers `outcome` to every delivery."""

    name: ClassVar[str] = "answering"
    outcome: Outcome = field(default_factory=Ok)

    async def handle(self, delivery: Delivery) -> Outcome:
        return self.outcome


@dataclass
class Wakes:
    """Counts the in-process wake-ups a replay asks for."""

    count: int = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
async def svc(engine: AsyncEngine) -> AsyncIterator[Services]:
    handlers = {route.name: Answering() for route in ROUTES}
    async with bootstrap_for_tests(
        engine, routes=ROUTES, handlers=dict[str, Handler](handlers), clock=FakeClock(T0)
    ) as built:
        yield built


def replays_of(svc: Services, wakes: Wakes) -> Replays:
    return Replays(svc.db, ROUTES, clock=svc.clock, on_queued=wakes)


async def post(svc: Services, event: str = "training.started", job: str = "job-1") -> str:
    accepted = await svc.ingest.accept(w3_body(event, job), [], source="test", trusted=True)
    return accepted.event_id


async def statuses(svc: Services) -> list[tuple[str, str]]:
    async with svc.db.sessions() as session:
        rows = await session.scalars(sa.select(DeliveryRow).order_by(DeliveryRow.seq))
        return [(row.route, row.status) for row in rows]


class TestTargets:
    def test_unnamed_follows_the_event_type(self, svc: Services) -> None:
        """Without a route name an event goes where ingest would send it (enabled routes)."""
        ref = _ref("model.deployed")
        assert [r.name for r in replays_of(svc, Wakes()).targets(None)(ref)] == ["deploys"]

    @pytest.mark.parametrize("name", [pytest.param("off", id="disabled"), "nope"])
    def test_a_named_route_must_be_enabled(self, svc: Services, name: str) -> None:
        """A disabled or unknown route is refused by name."""
        with pytest.raises(UnknownRoute, match=name):
            replays_of(svc, Wakes()).targets(name)


class TestReplayEvent:
    async def test_a_delivered_event_is_queued_again_and_workers_woken(self, svc: Services) -> None:
        """A succeeded delivery is made due again (same row), and the worker is woken once."""
        event_id = await post(svc)
        await svc.worker.run_until_idle()
        wakes = Wakes()
        replayed = await replays_of(svc, wakes).replay_event(event_id)
        assert replayed is not None
        assert (replayed.routes, replayed.queued, wakes.count) == (("hook",), 1, 1)
        assert await statuses(svc) == [("hook", "pending")]

    async def test_a_named_route_gets_a_new_delivery(self, svc: Services) -> None:
        """Replayed to a route it never went to, the event gets a delivery there."""
        event_id = await post(svc)
        replayed = await replays_of(svc, Wakes()).replay_event(event_id, route="deploys")
        assert replayed is not None
        assert replayed.routes == ("deploys",)
        assert sorted(await statuses(svc)) == [("deploys", "pending"), ("hook", "pending")]

    async def test_a_dry_run_counts_and_changes_nothing(self, svc: Services) -> None:
        """A dry run says what would be queued; nothing moves and nobody is woken."""
        event_id = await post(svc)
        await svc.worker.run_until_idle()
        wakes = Wakes()
        replayed = await replays_of(svc, wakes).replay_event(event_id, dry_run=True)
        assert replayed is not None
        assert (replayed.queued, wakes.count) == (1, 0)
        assert await statuses(svc) == [("hook", "succeeded")]

    async def test_a_missing_event_is_none_before_the_route_is_checked(self, svc: Services) -> None:
        """An unknown event is reported as missing even with an unknown route named."""
        assert await replays_of(svc, Wakes()).replay_event("evt_missing", route="nope") is None

    async def test_an_unknown_route_for_a_stored_event_is_refused(self, svc: Services) -> None:
        """A stored event replayed to an unknown route raises, and queues nothing."""
        event_id = await post(svc)
        await svc.worker.run_until_idle()
        with pytest.raises(UnknownRoute):
            await replays_of(svc, Wakes()).replay_event(event_id, route="nope")
        assert await statuses(svc) == [("hook", "succeeded")]

    async def test_workers_in_other_processes_hear_of_it(self, svc: Services) -> None:
        """On PostgreSQL a replay NOTIFYs at commit, so every listening worker wakes, not only
        this process's (on SQLite workers poll)."""
        event_id = await post(svc)
        await svc.worker.run_until_idle()
        heard = asyncio.Event()
        async with listening(svc.db.engine, heard.set) as listens:
            if not listens:
                pytest.skip("SQLite has no LISTEN; its workers poll")
            await Replays(svc.db, ROUTES, clock=svc.clock).replay_event(event_id)
            # Bounded only so a lost notification fails the test instead of hanging it.
            await asyncio.wait_for(heard.wait(), timeout=10)
        assert heard.is_set()


class TestReplayBatch:
    async def test_a_range_is_read_in_keyset_order(self, svc: Services) -> None:
        """Every event received in the window is replayed, oldest first."""
        first = await post(svc, job="job-1")
        second = await post(svc, job="job-2")
        await svc.worker.run_until_idle()
        replays = replays_of(svc, Wakes())
        batch = await replays.replay_batch(
            since=T0 - timedelta(hours=1),
            until=T0 + timedelta(hours=1),
            after=None,
            targets=replays.targets(None),
        )
        assert [ref.id for ref in batch.refs] == [first, second]
        assert batch.queued == 2


class TestRetry:
    async def test_dead_deliveries_are_made_due_and_workers_woken(
        self, engine: AsyncEngine
    ) -> None:
        """A dead delivery is pending again after a retry (a dry run only counts it)."""
        handlers = {route.name: Answering(Fail("no")) for route in ROUTES}
        async with bootstrap_for_tests(
            engine, routes=ROUTES, handlers=dict[str, Handler](handlers), clock=FakeClock(T0)
        ) as svc:
            await post(svc)
            await svc.worker.run_until_idle()
            assert await statuses(svc) == [("hook", "dead")]
            wakes = Wakes()
            replays = replays_of(svc, wakes)
            dead = DeliveryFilter(status="dead")
            assert await replays.retry(dead, dry_run=True) == 1
            assert await statuses(svc) == [("hook", "dead")]
            assert await replays.retry(dead) == 1
            assert (await statuses(svc), wakes.count) == ([("hook", "pending")], 1)
            assert await replays.retry(dead) == 0

    async def test_one_retried_by_id_is_heard_by_listening_workers(
        self, engine: AsyncEngine
    ) -> None:
        """Retrying one delivery by id (the admin API's single retry) NOTIFYs on PostgreSQL, so
        a worker in another process starts it without waiting for its poll."""
        handlers = {route.name: Answering(Fail("no")) for route in ROUTES}
        async with bootstrap_for_tests(
            engine, routes=ROUTES, handlers=dict[str, Handler](handlers), clock=FakeClock(T0)
        ) as svc:
            await post(svc)
            await svc.worker.run_until_idle()
            async with svc.db.sessions() as session:
                [delivery_id] = await session.scalars(sa.select(DeliveryRow.id))
            heard = asyncio.Event()
            async with listening(svc.db.engine, heard.set) as listens:
                if not listens:
                    pytest.skip("SQLite has no LISTEN; its workers poll")
                replays = Replays(svc.db, ROUTES, clock=svc.clock)
                assert await replays.retry(DeliveryFilter(), ids=[delivery_id]) == 1
                # Bounded only so a lost notification fails the test instead of hanging it.
                await asyncio.wait_for(heard.wait(), timeout=10)
            assert heard.is_set()


def _ref(event_type: str) -> EventRef:
    return EventRef(id="evt_x", type=event_type, workspace="default", job_id=None, received_at=T0)
