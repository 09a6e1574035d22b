"""`rotate-keys`' side of the store: reseal rows that are not yet under the target key (the
current key, or none for `--to-clear`), in keyset batches by id.

Safe beside a running service: each batch is its own short transaction, and each update only
applies while the row is as it was read (same `sealed_with`; for a run, the same `created_at`, as
a retried inference replaces its row), so a concurrent write is never overwritten with stale
values. An interrupted run loses nothing: the next one finds the rows still to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.sealing import (
    Sealer,
    dataset_context,
    open_body,
    open_headers,
    output_context,
    prompt_context,
    seal_event,
)
from service.store.tables import EVENTS, INFERENCE_RUNS, JOBS, SEALED_TABLES


@dataclass(frozen=True, slots=True)
class Resealed:
    """One batch's result: the last id seen (the next batch's start) and rows rewritten."""

    last_id: str | None
    rows: int


def _not_under(table: sa.Table, target: str | None) -> sa.ColumnElement[bool]:
    column = table.c.sealed_with
    if target is None:
        return column.is_not(None)
    if table is JOBS:
        # A job first heard of through its events has no dataset: nothing to seal.
        return sa.and_(JOBS.c.dataset.is_not(None), sa.or_(column.is_(None), column != target))
    return sa.or_(column.is_(None), column != target)


async def _next_rows(
    session: AsyncSession,
    table: sa.Table,
    columns: tuple[sa.ColumnElement[Any], ...],
    sealer: Sealer,
    *,
    after: str | None,
    limit: int,
) -> Sequence[Any]:
    """The next `limit` rows by id after `after` that are not yet under the sealer's key."""
    stmt = (
        sa.select(*columns)
        .where(_not_under(table, sealer.key_id))
        .order_by(table.c.id)
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(table.c.id > after)
    return (await session.execute(stmt)).all()


async def pending(session: AsyncSession, target: str | None) -> int:
    """Rows of every sealed table not yet under `target`."""
    total = 0
    for table in SEALED_TABLES:
        stmt = sa.select(sa.func.count()).select_from(table).where(_not_under(table, target))
        total += (await session.scalar(stmt)) or 0
    return total


async def reseal_events(
    session: AsyncSession, sealer: Sealer, *, after: str | None, limit: int
) -> Resealed:
    """Reseal up to `limit` events after id `after` under the sealer's current key."""
    e = EVENTS.c
    columns = (e.id, e.raw_body, e.headers, e.sealed_with)
    rows = await _next_rows(session, EVENTS, columns, sealer, after=after, limit=limit)
    if not rows:
        return Resealed(None, 0)
    updates: list[dict[str, Any]] = []
    for event_id, raw_body, headers, old in rows:
        body = open_body(sealer, event_id, raw_body, old)
        clear_headers = open_headers(sealer, event_id, headers, old)
        new = seal_event(sealer, event_id, body, clear_headers)
        updates.append(
            {
                "p_id": event_id,
                "p_old": old,
                "p_raw_body": new["raw_body"],
                "p_headers": new["headers"],
                "p_sealed_with": new["sealed_with"],
            }
        )
    await session.execute(_EVENT_UPDATE, updates)
    return Resealed(rows[-1].id, len(rows))


_EVENT_UPDATE = (
    sa.update(EVENTS)
    .where(
        EVENTS.c.id == sa.bindparam("p_id"),
        EVENTS.c.sealed_with.is_not_distinct_from(sa.bindparam("p_old", type_=sa.String)),
    )
    .values(
        raw_body=sa.bindparam("p_raw_body", type_=EVENTS.c.raw_body.type),
        headers=sa.bindparam("p_headers", type_=EVENTS.c.headers.type),
        sealed_with=sa.bindparam("p_sealed_with", type_=sa.String),
    )
    .execution_options(synchronize_session=False)
)


async def reseal_runs(
    session: AsyncSession, sealer: Sealer, *, after: str | None, limit: int
) -> Resealed:
    """Reseal up to `limit` inference runs after id `after` under the sealer's current key."""
    r = INFERENCE_RUNS.c
    columns = (r.id, r.delivery_id, r.prompt_index, r.prompt, r.output, r.sealed_with, r.created_at)
    rows = await _next_rows(session, INFERENCE_RUNS, columns, sealer, after=after, limit=limit)
    if not rows:
        return Resealed(None, 0)
    updates: list[dict[str, Any]] = []
    for run_id, delivery_id, index, prompt, output, old, created_at in rows:
        where = (delivery_id, index)
        clear_prompt = sealer.open_text(prompt, old, prompt_context(*where))
        clear_output = (
            None if output is None else sealer.open_text(output, old, output_context(*where))
        )
        updates.append(
            {
                "p_id": run_id,
                "p_old": old,
                "p_created_at": created_at,
                "p_prompt": sealer.seal_text(clear_prompt, prompt_context(*where)),
                "p_output": None
                if clear_output is None
                else sealer.seal_text(clear_output, output_context(*where)),
                "p_sealed_with": sealer.key_id,
            }
        )
    await session.execute(_RUN_UPDATE, updates)
    return Resealed(rows[-1].id, len(rows))


_RUN_UPDATE = (
    sa.update(INFERENCE_RUNS)
    .where(
        INFERENCE_RUNS.c.id == sa.bindparam("p_id"),
        INFERENCE_RUNS.c.sealed_with.is_not_distinct_from(sa.bindparam("p_old", type_=sa.String)),
        INFERENCE_RUNS.c.created_at
        == sa.bindparam("p_created_at", type_=INFERENCE_RUNS.c.created_at.type),
    )
    .values(
        prompt=sa.bindparam("p_prompt", type_=sa.Text),
        output=sa.bindparam("p_output", type_=sa.Text),
        sealed_with=sa.bindparam("p_sealed_with", type_=sa.String),
    )
    .execution_options(synchronize_session=False)
)


async def reseal_jobs(
    session: AsyncSession, sealer: Sealer, *, after: str | None, limit: int
) -> Resealed:
    """Reseal up to `limit` jobs' datasets after id `after` under the sealer's current key."""
    j = JOBS.c
    columns = (j.id, j.dataset, j.sealed_with)
    rows = await _next_rows(session, JOBS, columns, sealer, after=after, limit=limit)
    if not rows:
        return Resealed(None, 0)
    updates: list[dict[str, Any]] = []
    for job_id, dataset, old in rows:
        clear = None if dataset is None else sealer.open_text(dataset, old, dataset_context(job_id))
        updates.append(
            {
                "p_id": job_id,
                "p_old": old,
                "p_dataset": None
                if clear is None
                else sealer.seal_text(clear, dataset_context(job_id)),
                "p_sealed_with": sealer.key_id,
            }
        )
    await session.execute(_JOB_UPDATE, updates)
    return Resealed(rows[-1].id, len(rows))


# The dataset is written once, when the job is submitted; the guard covers a second rotation.
_JOB_UPDATE = (
    sa.update(JOBS)
    .where(
        JOBS.c.id == sa.bindparam("p_id"),
        JOBS.c.sealed_with.is_not_distinct_from(sa.bindparam("p_old", type_=sa.String)),
    )
    .values(
        dataset=sa.bindparam("p_dataset", type_=sa.Text),
        sealed_with=sa.bindparam("p_sealed_with", type_=sa.String),
    )
    .execution_options(synchronize_session=False)
)
