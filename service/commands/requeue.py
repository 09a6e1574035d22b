"""`replay` and `retry-dead`: queue stored events or dead deliveries again for the worker."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from service.bootstrap import Overrides, configured_routes
from service.clock import SystemClock
from service.commands.basics import fail, settings_or_exit
from service.commands.progress import Progress
from service.config import Settings
from service.dispatch.replays import REPLAY_BATCH, Replays, Targets, UnknownRoute
from service.dispatch.routes_file import RoutesError
from service.events import parse_time
from service.logs import configure_logging
from service.store.db import (
    Database,
    StoreUnavailable,
    open_database,
)
from service.store.deliveries import DeliveryFilter


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


def _replays_or_exit(settings: Settings) -> tuple[Replays, Database]:
    """The replay service over the configured routes (exits 2 on an unusable routes file), and
    the database it was opened on, for the caller to close."""
    try:
        routes = configured_routes(settings, Overrides()).routes
    except RoutesError as exc:
        fail(2, f"routes: {exc}")
    db = open_database(settings.database_url)
    return Replays(db, routes, clock=SystemClock()), db


def _targets_or_exit(replays: Replays, named: str | None) -> Targets:
    try:
        return replays.targets(named)
    except UnknownRoute:
        fail(2, f"--route: no enabled route named {named!r}")


@asynccontextmanager
async def _closing(db: Database) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await db.aclose()


async def _replay_range(
    replays: Replays,
    *,
    window: tuple[datetime, datetime],
    targets: Targets,
    dry_run: bool,
    tally: _Tally,
    progress: Progress,
) -> None:
    """Replay [since, until) one transaction per batch, keyset by (received_at, id)."""
    since, until = window
    while True:
        batch = await replays.replay_batch(
            since=since, until=until, after=tally.last, targets=targets, dry_run=dry_run
        )
        if not batch.refs:
            return
        tally.events += len(batch.refs)
        tally.deliveries += batch.queued
        tally.last = (batch.refs[-1].received_at, batch.refs[-1].id)
        progress.update(
            f"{tally.events} events, {tally.deliveries} deliveries, "
            f"at {tally.last[0]:%Y-%m-%dT%H:%M:%SZ}"
        )
        if len(batch.refs) < REPLAY_BATCH:
            return


async def _replay(
    db: Database,
    replays: Replays,
    args: argparse.Namespace,
    window: tuple[datetime, datetime] | None,
    targets: Targets,
    tally: _Tally,
    progress: Progress,
) -> bool:
    """Replay into `tally`; False when the one `--event` asked for is not stored."""
    async with _closing(db):
        if window is None:
            replayed = await replays.replay_event(
                args.event, route=args.route, dry_run=args.dry_run
            )
            if replayed is None:
                return False
            tally.events, tally.deliveries = 1, replayed.queued
            return True
        await _replay_range(
            replays,
            window=window,
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
    replays, db = _replays_or_exit(settings)
    targets = _targets_or_exit(replays, args.route)
    tally = _Tally()
    progress = Progress("replay", sys.stderr)
    try:
        found = asyncio.run(_replay(db, replays, args, window, targets, tally, progress))
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


async def _retry_dead(
    db: Database, replays: Replays, where: DeliveryFilter, *, dry_run: bool
) -> int:
    async with _closing(db):
        return await replays.retry(where, dry_run=dry_run)


def cmd_retry_dead(args: argparse.Namespace) -> int:
    """Make dead deliveries due again, as `POST /admin/deliveries/retry` (status dead) does."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    # A fresh budget per route as configured now, as the admin API gives.
    replays, db = _replays_or_exit(settings)
    where = DeliveryFilter(status="dead", route=args.route, job_id=args.job_id)
    try:
        count = asyncio.run(_retry_dead(db, replays, where, dry_run=args.dry_run))
    except StoreUnavailable as exc:
        fail(1, f"store unavailable: {exc}")
    if args.dry_run:
        print(f"would retry {count} dead deliveries")
    else:
        print(f"retried {count} dead deliveries")
    return 0
