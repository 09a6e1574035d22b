"""`purge`: delete events older than an age, with their deliveries, attempts and inference runs;
then forget the dedup keys (tombstones) of events received more than DEDUP_RETENTION_DAYS ago.

Safe beside a running service: one short transaction per batch (on SQLite the write lock is held
for one batch only), and an event with a delivery still to make is kept. Job rows are never
deleted: they are small, and the job history stays.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from service.clock import SystemClock
from service.commands.basics import batch_size_or_exit, fail, settings_or_exit
from service.commands.common import SQLITE_PAUSE_SECONDS
from service.commands.progress import Progress
from service.config import Settings
from service.logs import configure_logging
from service.store.db import Database, StoreUnavailable, is_sqlite, open_database
from service.store.purge import purge_batch, purge_tombstones
from service.timestamps import rfc3339

# Anything older is older than every event; the bound keeps `now - age` a representable time.
MAX_AGE = timedelta(days=36_500)

UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
_AGE = re.compile(r"([0-9]+)([dhm])")


def parse_age(text: str) -> timedelta:
    """`<n>d`, `<n>h` or `<n>m` (days, hours, minutes) as a timedelta; ValueError saying what is
    wrong with anything else, zero, or more than 100 years."""
    match = _AGE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"not a whole number of days, hours or minutes such as 90d, 12h or 30m: {text[:64]!r}"
        )
    count, unit = int(match[1]), UNITS[match[2]]
    if count == 0:
        raise ValueError(f"must be more than zero: {text!r}")
    if count > MAX_AGE // unit:
        raise ValueError(f"at most {MAX_AGE.days}d: {text[:64]!r}")
    return count * unit


@dataclass(slots=True)
class Tally:
    """What a purge has done so far (committed batches only)."""

    deleted: int = 0
    deliveries: int = 0
    kept: int = 0
    # Tombstones deleted, their events received before the dedup cutoff (those written are
    # not counted).
    tombstones: int = 0
    last: tuple[datetime, str] | None = None


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """When a purge runs, and the lines it draws: events received before `events` go, and
    tombstones of events received before `dedup` go (none is written for such an event)."""

    now: datetime
    events: datetime
    dedup: datetime


def cutoffs(now: datetime, *, age: timedelta, dedup_days: int) -> Cutoffs:
    """The cutoffs of a purge at `now`, in whole seconds so that those printed are those applied."""
    at = now.replace(microsecond=0)
    return Cutoffs(now=now, events=at - age, dedup=at - timedelta(days=dedup_days))


async def purge(
    db: Database,
    *,
    cuts: Cutoffs,
    batch_size: int,
    dry_run: bool,
    tally: Tally,
    progress: Progress,
    pause: float = 0.0,
) -> None:
    """Purge (or count) every old event, then every expired tombstone, one transaction per
    batch, into `tally`."""
    run = db.read if dry_run else db.write
    while True:
        work = partial(
            purge_batch,
            cutoff=cuts.events,
            after=tally.last,
            limit=batch_size,
            dry_run=dry_run,
            now=cuts.now,
            dedup_cutoff=cuts.dedup,
        )
        batch = await run(work)
        tally.deleted += batch.deleted
        tally.deliveries += batch.deliveries
        tally.kept += batch.kept
        if batch.last is None or batch.scanned < batch_size:
            break
        tally.last = batch.last
        progress.update(
            f"{tally.deleted} events, {tally.deliveries} deliveries, {tally.kept} kept, "
            f"at {rfc3339(batch.last[0], digits=0)}"
        )
        await asyncio.sleep(pause)
    forget = partial(purge_tombstones, cutoff=cuts.dedup, limit=batch_size, dry_run=dry_run)
    while True:
        forgotten = await run(forget)
        tally.tombstones += forgotten
        # A dry run counts them all at once.
        if dry_run or forgotten < batch_size:
            return
        await asyncio.sleep(pause)


async def _purge(
    settings: Settings,
    *,
    cuts: Cutoffs,
    batch_size: int,
    dry_run: bool,
    tally: Tally,
    progress: Progress,
) -> None:
    db = open_database(settings.database_url)
    pause = SQLITE_PAUSE_SECONDS if is_sqlite(settings.database_url) and not dry_run else 0.0
    try:
        await purge(
            db,
            cuts=cuts,
            batch_size=batch_size,
            dry_run=dry_run,
            tally=tally,
            progress=progress,
            pause=pause,
        )
    finally:
        await db.aclose()


def _options_or_exit(args: argparse.Namespace) -> tuple[timedelta, int]:
    try:
        age = parse_age(args.older_than)
    except ValueError as exc:
        fail(2, f"--older-than: {exc}")
    return age, batch_size_or_exit(args.batch_size)


def summary(tally: Tally, *, cuts: Cutoffs, seconds: float, dry_run: bool) -> str:
    """The line `purge` always ends with."""
    did, kept = ("would delete", "would keep") if dry_run else ("deleted", "kept")
    return (
        f"purge: {did} {tally.deleted} events ({tally.deliveries} deliveries) older than "
        f"{rfc3339(cuts.events, digits=0)} in {seconds:.1f} s; {kept} {tally.kept} with unfinished "
        f"deliveries; {did} {tally.tombstones} dedup keys of events older than "
        f"{rfc3339(cuts.dedup, digits=0)}"
    )


def cmd_purge(args: argparse.Namespace) -> int:
    """Delete events received before now minus `--older-than`, with what cascades from them."""
    age, batch_size = _options_or_exit(args)
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    cuts = cutoffs(SystemClock().now(), age=age, dedup_days=settings.dedup_retention_days)
    tally = Tally()
    started = time.monotonic()
    progress = Progress("purge", sys.stderr)
    try:
        asyncio.run(
            _purge(
                settings,
                cuts=cuts,
                batch_size=batch_size,
                dry_run=args.dry_run,
                tally=tally,
                progress=progress,
            )
        )
    except StoreUnavailable as exc:
        progress.abandon()
        # Batches already committed stay done; running again goes on from the oldest left.
        done = (
            f" ({tally.deleted} events deleted before that)"
            if tally.deleted and not args.dry_run
            else ""
        )
        fail(1, f"store unavailable: {exc}{done}")
    seconds = time.monotonic() - started
    progress.finish(f"{tally.deleted} events, {tally.deliveries} deliveries, {tally.kept} kept")
    print(summary(tally, cuts=cuts, seconds=seconds, dry_run=args.dry_run))
    return 0
