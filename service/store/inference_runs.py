"""The `inference_runs` table: one row per (delivery, prompt) of the `inference` handler, so a
retried delivery redoes only the prompts that have not succeeded, and a job's timeline can show
what its new model answered.

Text is made storable here (no NUL, which PostgreSQL refuses; errors clipped), whatever the model
or the route's options sent. Storage failures leave as `RunsUnavailable`, which the handler turns
into a retry; this module never decides an outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.clock import Clock
from service.events import clean_text
from service.ids import new_id
from service.ports import InferenceRun, MemoryUnavailable
from service.store.db import Database, StoreUnavailable
from service.store.dialect import insert_for
from service.store.errors import SealedDataUnreadable
from service.store.sealing import (
    PLAINTEXT,
    Sealer,
    output_context,
    prompt_context,
)
from service.store.tables import INFERENCE_RUNS, InferenceRunRow

MAX_ERROR = 2000  # characters of an error message kept
TIMELINE_LIMIT = 500  # runs of one job shown on its timeline, as for its events
SUCCEEDED = "succeeded"
FAILED = "failed"


class RunsUnavailable(MemoryUnavailable):
    """The inference runs cannot be read or written right now; the attempt should be retried.

    A kind of `MemoryUnavailable` (the runs are the handler's durable memory), so the handler,
    which sits below the store, can catch it without importing it."""


class StoredRuns:
    """`InferenceRuns` on the service's database."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def of_delivery(self, delivery_id: str) -> dict[int, InferenceRun]:
        """The runs recorded for `delivery_id`, by prompt index."""

        async def read(session: AsyncSession) -> dict[int, InferenceRun]:
            rows = await session.scalars(
                sa.select(InferenceRunRow).where(InferenceRunRow.delivery_id == delivery_id)
            )
            return {row.prompt_index: _run(row, self._db.sealer) for row in rows}

        try:
            return await self._db.read(read)
        except (StoreUnavailable, SealedDataUnreadable) as exc:
            raise RunsUnavailable(str(exc)) from exc

    async def record(self, run: InferenceRun) -> None:
        """Keep `run`, replacing the earlier run of the same delivery and prompt (race-safe).

        A success is never replaced by a failure: only a run overlapping a finished one (an
        expired claim) could try, and the success is what was paid for."""
        values = _values(run, self._clock.now(), self._db.sealer)

        async def write(session: AsyncSession) -> None:
            await session.execute(_upsert(session, values))

        try:
            await self._db.write(write)
        except StoreUnavailable as exc:
            raise RunsUnavailable(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class JobRun:
    """A stored run as the admin views show it: its row id and time, prompt and output in clear."""

    id: str
    created_at: datetime
    run: InferenceRun


async def runs_of_job(
    session: AsyncSession, llmtune_job_id: str, sealer: Sealer = PLAINTEXT
) -> list[JobRun]:
    """A job's inference runs, oldest first (for its timeline)."""
    stmt = (
        sa.select(InferenceRunRow)
        .where(InferenceRunRow.job_id == llmtune_job_id)
        .order_by(
            InferenceRunRow.created_at, InferenceRunRow.delivery_id, InferenceRunRow.prompt_index
        )
        .limit(TIMELINE_LIMIT)
    )
    rows = await session.scalars(stmt)
    return [JobRun(row.id, row.created_at, _run(row, sealer)) for row in rows]


def _opened(sealer: Sealer, row: InferenceRunRow) -> tuple[str, str | None]:
    """A row's prompt and output in clear."""
    where = (row.delivery_id, row.prompt_index)
    prompt = sealer.open_text(row.prompt, row.sealed_with, prompt_context(*where))
    if row.output is None:
        return prompt, None
    return prompt, sealer.open_text(row.output, row.sealed_with, output_context(*where))


def _run(row: InferenceRunRow, sealer: Sealer) -> InferenceRun:
    prompt, output = _opened(sealer, row)
    return InferenceRun(
        delivery_id=row.delivery_id,
        prompt_index=row.prompt_index,
        event_id=row.event_id,
        job_id=row.job_id,
        route=row.route,
        model=row.model,
        prompt=prompt,
        status=row.status,
        output=output,
        tokens=row.tokens,
        latency_ms=row.latency_ms,
        error=row.error,
    )


def _values(run: InferenceRun, now: datetime, sealer: Sealer) -> dict[str, Any]:
    where = (run.delivery_id, run.prompt_index)
    output = None if run.output is None else clean_text(run.output)
    return {
        "delivery_id": run.delivery_id,
        "prompt_index": run.prompt_index,
        "event_id": run.event_id,
        "job_id": run.job_id,
        "route": run.route,
        "model": clean_text(run.model),
        "prompt": sealer.seal_text(clean_text(run.prompt), prompt_context(*where)),
        "status": run.status,
        "output": None if output is None else sealer.seal_text(output, output_context(*where)),
        "tokens": run.tokens,
        "latency_ms": run.latency_ms,
        "error": None if run.error is None else clean_text(run.error, MAX_ERROR),
        # The time of this (latest) run: a prompt retried later sorts later on the timeline.
        "created_at": now,
        "sealed_with": sealer.key_id,
    }


def _upsert(session: AsyncSession, values: dict[str, Any]) -> sa.Insert:
    insert = insert_for(session, INFERENCE_RUNS).values(id=new_id("run"), **values)
    table = INFERENCE_RUNS.c
    replaced = {
        name: insert.excluded[name]
        for name in values
        if name not in ("delivery_id", "prompt_index")
    }
    return insert.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[table.delivery_id, table.prompt_index],
        set_=replaced,
        where=sa.or_(table.status != SUCCEEDED, insert.excluded.status == SUCCEEDED),
    )
