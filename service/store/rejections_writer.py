"""The recorder of refused webhook requests: bounded, off the request path, never failing one.

`record` only puts the row in a bounded in-memory queue (dropping it when full: a flood of
forged requests must neither grow memory nor queue database writes without limit). A background
task writes queued rows in batches and, every `prune_every` rows, deletes those older than
`max_age`, all but the newest `keep_per_address` of each client address (so one source cannot
flush the others' rows out) and all but the newest `keep`. A store failure is logged and the
batch dropped: a rejection record is a diagnostic, never a reason to change the answer to a
sender.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from service.clock import Clock
from service.store.db import Database
from service.store.rejections import NewRejection, insert_rejections, prune_rejections

log = structlog.get_logger(__name__)

MAX_AGE = timedelta(days=7)
KEEP = 10_000
KEEP_PER_ADDRESS = 1000
QUEUE_LIMIT = 1000
BATCH_LIMIT = 200
PRUNE_EVERY = 500
SHUTDOWN_SECONDS = 2.0


class RejectionLog:
    """Records refused webhook requests in `webhook_rejections`, in the background."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        max_age: timedelta = MAX_AGE,
        keep: int = KEEP,
        keep_per_address: int = KEEP_PER_ADDRESS,
        prune_every: int = PRUNE_EVERY,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        self._db = db
        self._clock = clock
        self._max_age = max_age
        self._keep = keep
        self._keep_per_address = keep_per_address
        self._prune_every = prune_every
        self._queue: asyncio.Queue[NewRejection] | None = None
        self._queue_limit = queue_limit
        self._since_prune = prune_every  # prune on the first write after start
        self.dropped = 0

    def record(self, rejection: NewRejection) -> None:
        """Queue `rejection` for writing; drop it when not running or the queue is full."""
        queue = self._queue
        if queue is None or queue.full():
            self.dropped += 1
            return
        queue.put_nowait(rejection)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Write queued records for the duration of the block; write what is left on exit."""
        queue: asyncio.Queue[NewRejection] = asyncio.Queue(self._queue_limit)
        self._queue = queue
        task = asyncio.create_task(self._write_forever(queue), name="rejection-log")
        try:
            yield
        finally:
            self._queue = None
            # What is queued gets a moment to be written; a stuck store must not hold shutdown.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.join(), SHUTDOWN_SECONDS)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def drained(self) -> None:
        """Return once everything recorded so far is written (or dropped)."""
        if self._queue is not None:
            await self._queue.join()

    async def _write_forever(self, queue: asyncio.Queue[NewRejection]) -> None:
        while True:
            batch = [await queue.get()]
            batch += _take(queue, BATCH_LIMIT - 1)
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    queue.task_done()

    async def _write(self, batch: list[NewRejection]) -> None:
        if not batch:
            return
        self._since_prune += len(batch)
        prune = self._since_prune >= self._prune_every
        before = self._clock.now() - self._max_age

        async def work(session: AsyncSession) -> int:
            await insert_rejections(session, batch)
            if not prune:
                return 0
            return await prune_rejections(
                session, before=before, keep=self._keep, keep_per_address=self._keep_per_address
            )

        try:
            await self._db.write(work)
        except Exception as exc:  # a diagnostic must never stop its own writer
            self.dropped += len(batch)
            log.warning("rejections_not_recorded", count=len(batch), error=type(exc).__name__)
            return
        if prune:
            self._since_prune = 0


def _take(queue: asyncio.Queue[NewRejection], most: int) -> list[NewRejection]:
    taken: list[NewRejection] = []
    while not queue.empty() and len(taken) < most:
        taken.append(queue.get_nowait())
    return taken
