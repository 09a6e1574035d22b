"""`rotate-keys`' side of the store: reseal rows that are not yet under the target key (the
current key, or none for `--to-clear`), in keyset batches by id.

Safe beside a running service: each batch is its own short transaction, and each update only
applies while the row is as it was read (same `sealed_with`; for a run, the same `created_at`, as
a retried inference replaces its row), so a concurrent write is never overwritten with stale
values. An interrupted run loses nothing: the next one finds the rows still to do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


# What one row becomes: its sealed columns' new values (`sealed_with` included).
Reseal = Callable[[Sealer, Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one table's rows are resealed: the columns read, the new values of a row, and the
    guarded update that writes them."""

    table: sa.Table
    read: tuple[str, ...]
    guards: tuple[str, ...]
    reseal: Reseal
    update: sa.Update


def _plan(
    table: sa.Table,
    read: tuple[str, ...],
    writes: tuple[str, ...],
    reseal: Reseal,
    *,
    guards: tuple[str, ...] = (),
) -> _Plan:
    """A plan whose update writes `writes` and `sealed_with` only while the row's `sealed_with`
    (and each of `guards`) is as it was read."""
    c = table.c
    written = (*writes, "sealed_with")
    update = (
        sa.update(table)
        .where(
            c.id == sa.bindparam("p_id"),
            c.sealed_with.is_not_distinct_from(sa.bindparam("p_was_sealed_with", type_=sa.String)),
            *(c[name] == sa.bindparam(f"p_was_{name}", type_=c[name].type) for name in guards),
        )
        .values({name: sa.bindparam(f"p_{name}", type_=c[name].type) for name in written})
        .execution_options(synchronize_session=False)
    )
    guarded = ("sealed_with", *guards)
    return _Plan(table, ("id", *guarded, *read), guarded, reseal, update)


async def _reseal(
    session: AsyncSession, plan: _Plan, sealer: Sealer, *, after: str | None, limit: int
) -> Resealed:
    """Reseal up to `limit` of the plan's rows after id `after` under the sealer's current key."""
    columns = tuple(plan.table.c[name] for name in plan.read)
    rows = await _next_rows(session, plan.table, columns, sealer, after=after, limit=limit)
    if not rows:
        return Resealed(None, 0)
    updates = []
    for row in rows:
        was = {f"p_was_{name}": getattr(row, name) for name in plan.guards}
        new = {f"p_{name}": value for name, value in plan.reseal(sealer, row).items()}
        updates.append({"p_id": row.id, **was, **new})
    await session.execute(plan.update, updates)
    return Resealed(rows[-1].id, len(rows))


def _event(sealer: Sealer, row: Any) -> dict[str, Any]:
    body = open_body(sealer, row.id, row.raw_body, row.sealed_with)
    headers = open_headers(sealer, row.id, row.headers, row.sealed_with)
    return seal_event(sealer, row.id, body, headers)


def _run(sealer: Sealer, row: Any) -> dict[str, Any]:
    where = (row.delivery_id, row.prompt_index)
    values: dict[str, Any] = {"sealed_with": sealer.key_id}
    for name, context in (("prompt", prompt_context(*where)), ("output", output_context(*where))):
        stored = getattr(row, name)
        clear = None if stored is None else sealer.open_text(stored, row.sealed_with, context)
        values[name] = None if clear is None else sealer.seal_text(clear, context)
    return values


def _job(sealer: Sealer, row: Any) -> dict[str, Any]:
    context = dataset_context(row.id)
    clear = sealer.open_text(row.dataset, row.sealed_with, context)  # only jobs with one
    return {"dataset": sealer.seal_text(clear, context), "sealed_with": sealer.key_id}


_EVENTS = _plan(EVENTS, ("raw_body", "headers"), ("raw_body", "headers"), _event)
# A retried inference replaces its run (a new `created_at`): a stale reseal must not undo it.
_RUNS = _plan(
    INFERENCE_RUNS,
    ("delivery_id", "prompt_index", "prompt", "output"),
    ("prompt", "output"),
    _run,
    guards=("created_at",),
)
# The dataset is written once, when the job is submitted; the guard covers a second rotation.
_JOBS = _plan(JOBS, ("dataset",), ("dataset",), _job)


async def reseal_events(
    session: AsyncSession, sealer: Sealer, *, after: str | None, limit: int
) -> Resealed:
    """Reseal up to `limit` events after id `after` under the sealer's current key."""
    return await _reseal(session, _EVENTS, sealer, after=after, limit=limit)


async def reseal_runs(
    session: AsyncSession, sealer: Sealer, *, after: str | None, limit: int
) -> Resealed:
    """Reseal up to `limit` inference runs after id `after` under the sealer's current key."""
    return await _reseal(session, _RUNS, sealer, after=after, limit=limit)


async def reseal_jobs(
    session: AsyncSession, sealer: Sealer, *, after: str | None, limit: int
) -> Resealed:
    """Reseal up to `limit` jobs' datasets after id `after` under the sealer's current key."""
    return await _reseal(session, _JOBS, sealer, after=after, limit=limit)
