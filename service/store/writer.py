"""The one ingest writer, with group commit: concurrent deliveries share one transaction.

Every source's events are written by `IngestWriter.write` (called by the ingest service, which
has already decided each event's job move and fan-out: the writer only writes them). A
request queues its row and waits; one flusher task takes everything queued so far and commits
it as one batch (`store/batch.py`), then answers each waiting request. While one batch commits,
the next one gathers, so under load a commit carries many events and at concurrency 1 it is
exactly one commit per event. `write` returns only after the commit that holds its row, so an
acknowledgement always means "durably stored".

Failures: a database that cannot be reached fails the whole batch with `StoreUnavailable`
(503, the sender retries, dedup absorbs the repeat). Any other failure of a batch (a row the
database refuses, a bug in one row's values) retries its rows one transaction each, so a bad
row fails only its own request. A full queue raises `Overloaded` at once instead of growing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import structlog

from service.batches import STOP, flush_batches
from service.store.batch import BatchStatements, Stored, WriteOutcome, write_batch
from service.store.db import (
    Database,
    StoreUnavailable,
    describe_storage_error,
    refused,
    retry_dropped,
)
from service.store.events import NewEvent
from service.tracing import NO_TRACING, Tracer

log = structlog.get_logger(__name__)

DEFAULT_QUEUE_LIMIT = 4096
DEFAULT_BATCH_LIMIT = 256


class Overloaded(StoreUnavailable):
    """The write queue is full: more deliveries are waiting than the store is taking."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The stored event's id, and whether this delivery was a repeat of it."""

    event_id: str
    duplicate: bool


@dataclass(slots=True)
class _Pending:
    new: NewEvent
    answer: asyncio.Future[WriteResult]


class IngestWriter:
    """Stores verified, normalized events, committing concurrent ones together.

    `running()` starts the flusher and, on the way out, drains it: what is queued is committed
    and answered before it returns. `write` outside `running()` raises `StoreUnavailable`.
    """

    def __init__(
        self,
        db: Database,
        *,
        on_commit: Callable[[], None] | None = None,
        on_batch: Callable[[int], None] | None = None,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        batch_limit: int = DEFAULT_BATCH_LIMIT,
        tracer: Tracer = NO_TRACING,
    ) -> None:
        self._tracer = tracer
        self._db = db
        self._on_commit = on_commit
        self._on_batch = on_batch
        self._sql = BatchStatements(db.engine.dialect.name)
        self._queue_limit = queue_limit
        self._batch_limit = batch_limit
        self._queue: asyncio.Queue[_Pending | object] | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the flusher for the duration of the block; drain it on exit."""
        # The stop marker may wait for room behind a full queue; it never takes a request's place.
        queue: asyncio.Queue[_Pending | object] = asyncio.Queue(self._queue_limit + 1)
        self._queue = queue
        flusher = asyncio.create_task(self._flush_until_stopped(queue), name="ingest-flusher")
        try:
            yield
        finally:
            self._queue = None  # new writes are refused from here on
            await queue.put(STOP)
            await flusher

    async def write(self, new: NewEvent) -> WriteResult:
        """Store `new` (or count it as a duplicate) and return once it is committed.

        Raises `Overloaded` when the queue is full, `StoreUnavailable` when the store fails.
        """
        queue = self._queue
        if queue is None:
            raise StoreUnavailable("the writer is not running (starting or shutting down)")
        if queue.qsize() >= self._queue_limit:
            raise Overloaded(f"{self._queue_limit} deliveries are already waiting to be stored")
        pending = _Pending(new, asyncio.get_running_loop().create_future())
        queue.put_nowait(pending)
        # A sender that hangs up cancels only this wait; its row is still committed.
        return await pending.answer

    async def _flush_until_stopped(self, queue: asyncio.Queue[_Pending | object]) -> None:
        await flush_batches(queue, self._batch_limit, self._flush)

    async def _flush(self, batch: list[_Pending]) -> None:
        if self._on_batch is not None:
            self._on_batch(len(batch))
        # One commit answers many requests: its span is linked to each of theirs.
        links = [pending.new.trace_parent for pending in batch]
        with self._tracer.span("ingest.commit", {"batch.size": len(batch)}, links=links):
            await self._flush_traced(batch)

    async def _flush_traced(self, batch: list[_Pending]) -> None:
        try:
            outcomes = await self._commit([p.new for p in batch])
        except Exception as exc:
            if len(batch) == 1 or not refused(exc):
                _fail(batch, exc)
                return
            log.warning("ingest_batch_refused", size=len(batch), cause=_cause(exc))
            await self._one_by_one(batch)
            return
        self._answer(batch, outcomes)

    async def _one_by_one(self, batch: list[_Pending]) -> None:
        for index, pending in enumerate(batch):
            try:
                outcomes = await self._commit([pending.new])
            except Exception as exc:
                if not refused(exc):
                    _fail(batch[index:], exc)  # the store went away: do not try the rest
                    return
                log.error(
                    "ingest_row_refused",
                    event_type=pending.new.event.type,
                    job_id=pending.new.event.job_id,
                    cause=_cause(exc),
                )
                _fail([pending], exc)
                continue
            self._answer([pending], outcomes)

    async def _commit(self, batch: list[NewEvent]) -> list[WriteOutcome]:
        async def attempt() -> list[WriteOutcome]:
            async with self._db.engine.begin() as conn:
                return await write_batch(conn, self._sql, batch, self._db.sealer)

        return await retry_dropped(attempt)

    def _answer(self, batch: list[_Pending], outcomes: list[WriteOutcome]) -> None:
        stored_new = False
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.answer.done():
                continue
            if isinstance(outcome, Stored):
                stored_new = stored_new or not outcome.duplicate
                pending.answer.set_result(WriteResult(outcome.event_id, outcome.duplicate))
            else:
                # A purge removed the original between the conflict and the count, and kept no
                # tombstone (too old to): the sender retries, and the retry stores it anew.
                pending.answer.set_exception(
                    StoreUnavailable("the stored original vanished during the write")
                )
        if stored_new and self._on_commit is not None:
            self._on_commit()  # wake this process's dispatch worker


def _cause(exc: BaseException) -> str:
    return describe_storage_error(exc.__cause__ or exc)


def _fail(batch: Sequence[_Pending], exc: BaseException) -> None:
    error = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(_cause(exc))
    for pending in batch:
        if not pending.answer.done():
            pending.answer.set_exception(error)
