"""`rotate-keys`: reseal every stored row (events, inference runs, jobs' datasets) under the first
of ENCRYPTION_KEYS (or write it back in clear with `--to-clear`), then forget the keys nothing is
sealed under any more.

Safe beside a running service (see `store/rotation.py`); stopped part way, it loses nothing, and
running it again goes on with the rows still to do. Every process must already run with the new
key list (new key first, old ones after it): a process still sealing under an old key would
leave rows that the old key is then needed for.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from functools import partial

from service.commands.basics import batch_size_or_exit, fail, settings_or_exit
from service.commands.common import SQLITE_PAUSE_SECONDS, keys_usable
from service.commands.progress import Progress, bar
from service.config import Settings
from service.crypto.sealing import Keyring
from service.logs import configure_logging
from service.store.db import StoreUnavailable, is_sqlite, open_database
from service.store.errors import SealedDataUnreadable
from service.store.keys import KeyCheckFailed, forget_keys_except
from service.store.rotation import pending, reseal_events, reseal_jobs, reseal_runs
from service.store.sealing import Sealer


@dataclass(slots=True)
class Tally:
    """What a rotation has done so far (committed batches only)."""

    rows: int = 0
    total: int = 0
    forgotten: list[str] = field(default_factory=list)


async def rotate(
    settings: Settings,
    keyring: Keyring,
    *,
    to_clear: bool,
    batch_size: int,
    tally: Tally,
    progress: Progress,
) -> None:
    """Reseal every row not yet under the target, one transaction per batch, into `tally`."""
    sealer = Sealer(keyring, seal_new=not to_clear)
    db = open_database(settings.database_url, sealer=sealer)
    pause = SQLITE_PAUSE_SECONDS if is_sqlite(settings.database_url) else 0.0
    try:
        tally.total = await db.read(partial(pending, target=sealer.key_id))
        for reseal in (reseal_events, reseal_runs, reseal_jobs):
            after: str | None = None
            while True:
                batch = await db.write(
                    partial(reseal, sealer=sealer, after=after, limit=batch_size)
                )
                if batch.last_id is None:
                    break
                after = batch.last_id
                tally.rows += batch.rows
                progress.update(f"{bar(tally.rows, tally.total)} rows")
                await asyncio.sleep(pause)
        tally.forgotten = await db.write(partial(forget_keys_except, keep=sealer.key_id))
    finally:
        await db.aclose()


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    """Reseal stored rows under the first key (or in clear), with progress; resumable."""
    batch_size = batch_size_or_exit(args.batch_size)
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    keyring = settings.keyring()
    if keyring is None:
        fail(2, "rotate-keys: ENCRYPTION_KEYS is not set (rows are resealed under its first key)")
    if not keys_usable(settings):
        return 2
    tally = Tally()
    progress = Progress("rotate-keys", sys.stderr)
    try:
        asyncio.run(
            rotate(
                settings,
                keyring,
                to_clear=args.to_clear,
                batch_size=batch_size,
                tally=tally,
                progress=progress,
            )
        )
    except (StoreUnavailable, SealedDataUnreadable, KeyCheckFailed) as exc:
        progress.abandon()
        fail(1, f"rotate-keys: stopped after {tally.rows} rows ({exc}); run it again to go on")
    target = "in clear" if args.to_clear else f"under key {keyring.current.id}"
    forgotten = ", ".join(tally.forgotten) or "none"
    progress.finish(f"{tally.rows} rows now {target}; keys no longer needed: {forgotten}")
    return 0
