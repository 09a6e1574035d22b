"""Replays and retries: stored events queued again for their routes, dead deliveries made due.

One service for the admin API and the `replay`/`retry-dead` commands, so both pick the same
targets and wake the same workers: on PostgreSQL a NOTIFY at commit reaches every worker process,
and `on_queued` wakes the one in this process (on SQLite workers poll). No HTTP here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.clock import Clock
from service.routing import Subscription, routes_for
from service.store import deliveries, events
from service.store.db import Database
from service.store.deliveries import NOTIFY_CHANNEL, DeliveryFilter
from service.store.events import EventRef

# Events per replay transaction: short write locks (SQLite has one writer) and bounded memory.
REPLAY_BATCH = 200
# Deliveries read per page when a dry run counts them.
COUNT_PAGE = 1000

# Which routes an event is replayed to.
Targets = Callable[[EventRef], list[Subscription]]


class UnknownRoute(ValueError):
    """A replay named a route that is not configured or not enabled."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no enabled route named {name!r}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Replayed:
    """One event replayed: the routes it went to and how many deliveries were queued."""

    event_id: str
    routes: tuple[str, ...]
    queued: int


@dataclass(frozen=True, slots=True)
class ReplayBatch:
    """A page of a time-range replay: the events read (keyset order) and deliveries queued."""

    refs: list[EventRef]
    queued: int


class Replays:
    """Queue deliveries again; every method is one transaction (or one per batch)."""

    def __init__(
        self,
        db: Database,
        routes: Sequence[Subscription],
        *,
        clock: Clock,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._routes = tuple(routes)
        self._clock = clock
        self._on_queued = on_queued

    def targets(self, named: str | None) -> Targets:
        """The enabled routes an event matches (as at ingest: its type and workspace), or the
        one enabled route `named`; `UnknownRoute` when there is none such."""
        if named is None:
            return lambda ref: routes_for(ref.type, self._routes, ref.workspace)
        chosen = [route for route in self._routes if route.name == named and route.enabled]
        if not chosen:
            raise UnknownRoute(named)
        return lambda _ref: chosen

    async def replay_event(
        self, event_id: str, *, route: str | None = None, dry_run: bool = False
    ) -> Replayed | None:
        """Queue one stored event again (or count what would be); None when it is not stored.
        The event is looked up before the route, so a missing event is reported first."""

        async def work(session: AsyncSession) -> Replayed | None:
            row = await events.get_event(session, event_id)
            if row is None:
                return None
            targets = self.targets(route)
            ref = EventRef(
                id=row.id,
                type=row.type,
                workspace=row.workspace,
                job_id=row.job_id,
                received_at=row.received_at,
            )
            queued = await self._queue(session, [ref], targets, dry_run=dry_run)
            return Replayed(event_id, tuple(r.name for r in targets(ref)), queued)

        replayed = await (self._db.read if dry_run else self._db.write)(work)
        self._woken(dry_run)
        return replayed

    async def replay_batch(
        self,
        *,
        since: datetime,
        until: datetime,
        after: tuple[datetime, str] | None,
        targets: Targets,
        dry_run: bool = False,
    ) -> ReplayBatch:
        """Queue again the next `REPLAY_BATCH` events received in [since, until) after `after`."""

        async def work(session: AsyncSession) -> ReplayBatch:
            refs = await events.events_received(
                session, since=since, until=until, after=after, limit=REPLAY_BATCH
            )
            return ReplayBatch(refs, await self._queue(session, refs, targets, dry_run=dry_run))

        batch = await (self._db.read if dry_run else self._db.write)(work)
        self._woken(dry_run or not batch.queued)
        return batch

    async def retry(
        self,
        where: DeliveryFilter,
        *,
        ids: Sequence[str] | None = None,
        dry_run: bool = False,
    ) -> int:
        """Make matching dead (or retrying) deliveries due now with a fresh attempt budget per
        route as configured now (every route, enabled or not); how many (would be)."""
        if dry_run:
            return await self._db.read(lambda session: _count_matching(session, where=where))
        budgets = {route.name: route.max_attempts for route in self._routes}
        now = self._clock.now()

        async def work(session: AsyncSession) -> int:
            count = await deliveries.retry(session, where=where, ids=ids, budgets=budgets, now=now)
            if count:
                await _wake_workers(session)
            return count

        count = await self._db.write(work)
        self._woken(False)
        return count

    async def _queue(
        self, session: AsyncSession, refs: Sequence[EventRef], targets: Targets, *, dry_run: bool
    ) -> int:
        if dry_run:
            # What `deliveries.replay` would queue: every target except an in-flight delivery.
            stored = await deliveries.deliveries_of(session, [ref.id for ref in refs])
            busy = {(row.event_id, row.route) for row in stored if row.status == "in_flight"}
            return sum((ref.id, r.name) not in busy for ref in refs for r in targets(ref))
        now = self._clock.now()
        queued = 0
        for ref in refs:
            queued += await deliveries.replay(
                session, event_id=ref.id, job_id=ref.job_id, routes=targets(ref), now=now
            )
        if queued:
            await _wake_workers(session)
        return queued

    def _woken(self, dry_run: bool) -> None:
        if not dry_run and self._on_queued is not None:
            self._on_queued()


async def _wake_workers(session: AsyncSession) -> None:
    # Workers LISTEN on PostgreSQL (delivered at commit, to every process); on SQLite they poll.
    # `deliveries.replay` and `retry` only notify when they insert, so say it once here.
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")))


async def _count_matching(session: AsyncSession, *, where: DeliveryFilter) -> int:
    count, cursor = 0, None
    while True:
        page = await deliveries.list_deliveries(
            session, where=where, limit=COUNT_PAGE, cursor=cursor
        )
        count += len(page.items)
        if page.next_key is None:
            return count
        cursor = page.next_key
