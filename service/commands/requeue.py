"""`replay` and `retry-dead`: queue stored events or dead deliveries again for the worker."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.bootstrap import Overrides, configured_routes
from service.clock import SystemClock
from service.commands.common import fail, settings_or_exit
from service.commands.progress import Progress
from service.config import Settings
from service.dispatch.routes_file import RoutesError
from service.events import parse_time
from service.logs import configure_logging
from service.routing import Route, routes_for
from service.store import deliveries, events
from service.store.db import (
    Database,
    StoreUnavailable,
    open_database,
)
from service.store.deliveries import NOTIFY_CHANNEL, DeliveryFilter
from service.store.events import EventRef

# Events per replay transaction: short write locks (SQLite has one writer) and bounded memory.
REPLAY_BATCH = 200

# Dead deliveries read per page when a dry run counts them.
COUNT_PAGE = 1000

# Which routes an event is replayed to.
Targets = Callable[[EventRef], list[Route]]


@dataclass(slots=True)
class _Tally:
    """What a replay has done so far (committed work only)."""

    events: int = 0
    deliveries: int = 0
    last: tuple[datetime, str] | None = None


def _time_option(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = parse_time(value)
    if parsed is None:
        fail(2, f"{option}: not an RFC 3339 time such as 2025-11-08T14:22:31Z: {value[:64]!r}")
    return parsed


def _routes_or_exit(settings: Settings) -> tuple[Route, ...]:
    try:
        return configured_routes(settings, Overrides()).routes
    except RoutesError as exc:
        fail(2, f"routes: {exc}")


def _replay_targets(routes: tuple[Route, ...], named: str | None) -> Targets:
    """Like the admin replay: the enabled routes the event matches (as at ingest: its type and
    workspace), or the one enabled route named."""
    if named is None:
        return lambda ref: routes_for(ref.type, routes, ref.workspace)
    chosen = [route for route in routes if route.name == named and route.enabled]
    if not chosen:
        fail(2, f"--route: no enabled route named {named!r}")
    return lambda _ref: chosen


@asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[Database]:
    db = open_database(settings.database_url)
    try:
        yield db
    finally:
        if db.read_engine is not db.engine:
            await db.read_engine.dispose()
        await db.engine.dispose()


async def _wake_workers(session: AsyncSession) -> None:
    # Workers LISTEN on PostgreSQL (delivered at commit, to every process); on SQLite they poll.
    # `deliveries.replay` and `retry` only notify when they insert, so say it once here.
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")))


async def _replay_refs(
    session: AsyncSession,
    refs: Sequence[EventRef],
    *,
    targets: Targets,
    dry_run: bool,
) -> int:
    """Queue the deliveries of `refs` again (or count what would be); how many."""
    if dry_run:
        # What `deliveries.replay` would queue: every target except an in-flight delivery.
        stored = await deliveries.deliveries_of(session, [ref.id for ref in refs])
        busy = {(row.event_id, row.route) for row in stored if row.status == "in_flight"}
        return sum((ref.id, r.name) not in busy for ref in refs for r in targets(ref))
    now = SystemClock().now()
    queued = 0
    for ref in refs:
        queued += await deliveries.replay(
            session, event_id=ref.id, job_id=ref.job_id, routes=targets(ref), now=now
        )
    if queued:
        await _wake_workers(session)
    return queued


async def _replay_one(
    session: AsyncSession, event_id: str, *, targets: Targets, dry_run: bool
) -> int | None:
    row = await events.get_event(session, event_id)
    if row is None:
        return None
    ref = EventRef(
        id=row.id,
        type=row.type,
        workspace=row.workspace,
        job_id=row.job_id,
        received_at=row.received_at,
    )
    return await _replay_refs(session, [ref], targets=targets, dry_run=dry_run)


async def _replay_batch(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    after: tuple[datetime, str] | None,
    targets: Targets,
    dry_run: bool,
) -> tuple[list[EventRef], int]:
    batch = await events.events_received(
        session, since=since, until=until, after=after, limit=REPLAY_BATCH
    )
    return batch, await _replay_refs(session, batch, targets=targets, dry_run=dry_run)


async def _replay_range(
    db: Database,
    *,
    since: datetime,
    until: datetime,
    targets: Targets,
    dry_run: bool,
    tally: _Tally,
    progress: Progress,
) -> None:
    """Replay [since, until) one transaction per batch, keyset by (received_at, id)."""
    run = db.read if dry_run else db.write
    while True:
        work = partial(
            _replay_batch,
            since=since,
            until=until,
            after=tally.last,
            targets=targets,
            dry_run=dry_run,
        )
        batch, queued = await run(work)
        if not batch:
            return
        tally.events += len(batch)
        tally.deliveries += queued
        tally.last = (batch[-1].received_at, batch[-1].id)
        progress.update(
            f"{tally.events} events, {tally.deliveries} deliveries, "
            f"at {tally.last[0]:%Y-%m-%dT%H:%M:%SZ}"
        )
        if len(batch) < REPLAY_BATCH:
            return


async def _replay(
    settings: Settings,
    args: argparse.Namespace,
    window: tuple[datetime, datetime] | None,
    targets: Targets,
    tally: _Tally,
    progress: Progress,
) -> bool:
    """Replay into `tally`; False when the one `--event` asked for is not stored."""
    async with _opened(settings) as db:
        if window is None:
            work = partial(_replay_one, event_id=args.event, targets=targets, dry_run=args.dry_run)
            queued = await (db.read if args.dry_run else db.write)(work)
            if queued is None:
                return False
            tally.events, tally.deliveries = 1, queued
            return True
        since, until = window
        await _replay_range(
            db,
            since=since,
            until=until,
            targets=targets,
            dry_run=args.dry_run,
            tally=tally,
            progress=progress,
        )
        return True


def _replay_window(args: argparse.Namespace) -> tuple[datetime, datetime] | None:
    """[since, until) for `--since`, None for `--event`; exits 2 on a bad or empty range."""
    since = _time_option("--since", args.since)
    until = _time_option("--until", args.until)
    if since is None:
        if until is not None:
            fail(2, "--until: only with --since")
        return None
    # By default up to now: events arriving meanwhile get their deliveries anyway.
    until = until or SystemClock().now()
    if until <= since:
        fail(2, "--until: must be later than --since")
    return since, until


def cmd_replay(args: argparse.Namespace) -> int:
    """Queue stored events' deliveries again, as `POST /admin/events/{id}/replay` does."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    window = _replay_window(args)
    targets = _replay_targets(_routes_or_exit(settings), args.route)
    tally = _Tally()
    progress = Progress("replay", sys.stderr)
    try:
        found = asyncio.run(_replay(settings, args, window, targets, tally, progress))
    except StoreUnavailable as exc:
        progress.abandon()
        resume = (
            f" ({tally.events} events done; to go on: --since {tally.last[0].isoformat()})"
            if tally.last is not None
            else ""
        )
        fail(1, f"store unavailable: {exc}{resume}")
    if not found:
        fail(1, f"no event {args.event!r}")
    if window is not None:
        progress.finish(f"{tally.events} events, {tally.deliveries} deliveries")
    if args.dry_run:
        print(f"would replay {tally.events} events, queue {tally.deliveries} deliveries")
    else:
        print(f"replayed {tally.events} events, queued {tally.deliveries} deliveries")
    return 0


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


async def _retry_and_wake(
    session: AsyncSession, *, where: DeliveryFilter, budgets: dict[str, int]
) -> int:
    count = await deliveries.retry(
        session, where=where, ids=None, budgets=budgets, now=SystemClock().now()
    )
    if count:
        await _wake_workers(session)
    return count


async def _retry_dead(
    settings: Settings, where: DeliveryFilter, budgets: dict[str, int], *, dry_run: bool
) -> int:
    async with _opened(settings) as db:
        if dry_run:
            return await db.read(partial(_count_matching, where=where))
        return await db.write(partial(_retry_and_wake, where=where, budgets=budgets))


def cmd_retry_dead(args: argparse.Namespace) -> int:
    """Make dead deliveries due again, as `POST /admin/deliveries/retry` (status dead) does."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    # A fresh budget per route as configured now; the admin API uses every route, enabled or not.
    budgets = {route.name: route.max_attempts for route in _routes_or_exit(settings)}
    where = DeliveryFilter(status="dead", route=args.route, job_id=args.job_id)
    try:
        count = asyncio.run(_retry_dead(settings, where, budgets, dry_run=args.dry_run))
    except StoreUnavailable as exc:
        fail(1, f"store unavailable: {exc}")
    if args.dry_run:
        print(f"would retry {count} dead deliveries")
    else:
        print(f"retried {count} dead deliveries")
    return 0
