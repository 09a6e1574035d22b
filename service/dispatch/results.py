"""The worker's attempt recorder: finished attempts are written many per transaction.

Each attempt hands its result to `record` and waits; one flusher task takes everything queued
so far and writes it in one transaction (`outbox.finish_many`; on PostgreSQL one statement,
run without BEGIN and COMMIT around it), then answers each waiting
attempt. There is no artificial delay: an idle flusher writes a lone result at once, and under
load the results gather while the previous batch commits. Until its result is committed a
delivery stays `in_flight` under its lease, so a crash loses at most the unwritten results,
and those deliveries are tried again once their leases expire (at least once, as ever).

On the way out (`running()` ends) the flusher writes whatever is still queued before it stops.
A store that cannot be reached fails the whole batch (`StoreUnavailable`: the leases expire and
the attempts are made again); a batch the database refuses is retried one result at a time, so
one bad row costs only its own attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from service.batches import STOP, flush_batches
from service.clock import Clock
from service.store import outbox
from service.store.db import Database, StoreUnavailable, describe_storage_error, refused
from service.store.outbox import Claimed, Finish

log = structlog.get_logger("service.dispatch")

DEFAULT_BATCH_LIMIT = 256


@dataclass(frozen=True, slots=True)
class _Pending:
    claimed: Claimed
    result: Finish
    answer: asyncio.Future[bool]


class AttemptRecorder:
    """Records finished attempts for the worker, committing concurrent ones together.

    `record` outside `running()` raises `StoreUnavailable`.
    """

    def __init__(self, db: Database, clock: Clock, *, batch_limit: int = DEFAULT_BATCH_LIMIT):
        self._db = db
        self._clock = clock
        self._batch_limit = batch_limit
        self._queue: asyncio.Queue[_Pending | object] | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the flusher for the duration of the block; on exit, write what is queued."""
        queue: asyncio.Queue[_Pending | object] = asyncio.Queue()
        self._queue = queue
        flusher = asyncio.create_task(self._flush_until_stopped(queue), name="attempt-recorder")
        try:
            yield
        finally:
            self._queue = None
            queue.put_nowait(STOP)
            await flusher

    async def record(self, claimed: Claimed, result: Finish) -> bool:
        """Record `result` and return once it is committed: False when the attempt had been
        overtaken (nothing written). Raises `StoreUnavailable` when the store failed."""
        queue = self._queue
        if queue is None:
            raise StoreUnavailable("the attempt recorder is not running")
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Pending(claimed, result, answer))
        # A cancelled attempt (shutdown) stops waiting; its result is still written.
        return await answer

    async def _flush_until_stopped(self, queue: asyncio.Queue[_Pending | object]) -> None:
        await flush_batches(queue, self._batch_limit, self._flush)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            applied = await self._write(batch)
        except Exception as exc:
            if len(batch) == 1 or not refused(exc):
                _fail(batch, exc)
                return
            log.warning("attempt_batch_refused", size=len(batch), cause=_cause(exc))
            for pending in batch:
                await self._flush([pending])
            return
        for pending, ours in zip(batch, applied, strict=True):
            if not pending.answer.done():
                pending.answer.set_result(ours)

    async def _write(self, batch: list[_Pending]) -> list[bool]:
        results = [(pending.claimed, pending.result) for pending in batch]
        now = self._clock.now()
        # One statement on PostgreSQL, so no transaction of its own (two round trips fewer).
        return await self._db.write_one_statement(
            lambda conn: outbox.finish_many(conn, results, now=now)
        )


def _cause(exc: BaseException) -> str:
    return describe_storage_error(exc.__cause__ or exc)


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    if not isinstance(exc, StoreUnavailable):
        log.error("attempt_record_failed", size=len(batch), cause=_cause(exc))
    error = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(_cause(exc))
    for pending in batch:
        if not pending.answer.done():
            pending.answer.set_exception(error)
