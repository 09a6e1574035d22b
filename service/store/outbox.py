"""The worker's side of the deliveries table: claim due deliveries under a lease, record each
attempt's result (many attempts in one transaction), give unfinished attempts back, and report
the queue.

Claims are race-safe on both stores: PostgreSQL's `FOR UPDATE SKIP LOCKED` lets many workers
share the queue; SQLite's single writer (`BEGIN IMMEDIATE`) serializes the one claimer. A
delivery waits while an earlier delivery (lower `seq`) of the same job to the same route is
unfinished. Finishing is guarded by the attempt number, so a worker whose lease expired cannot
overwrite a newer attempt's result. Functions take the caller's session or connection and never
commit; their statements are built once, at import. On PostgreSQL `claim` and `finish_many` are
one statement each, so the worker runs them on autocommit connections (`write_one_statement`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.delivery_status import UNFINISHED
from service.store.deliveries import clip
from service.store.tables import ATTEMPTS, DELIVERIES, EVENTS


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery leased to this worker for one attempt, with what its handler needs."""

    id: str
    attempt: int
    max_attempts: int
    route: str
    handler: str
    event_id: str
    job_id: str | None
    source: str
    workspace: str
    raw_body: bytes  # as stored: sealed when `sealed_with` names a key (store/sealing.py)
    received_at: datetime
    trace_parent: str | None = None
    sealed_with: str | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """The result of one attempt, to be recorded."""

    status: str
    next_attempt_at: datetime | None
    outcome: str
    detail: str | None
    started_at: datetime
    duration_ms: float


_NOW = sa.bindparam("now", type_=DELIVERIES.c.next_attempt_at.type)
_LEASE_UNTIL = sa.bindparam("lease_until", type_=DELIVERIES.c.lease_expires_at.type)
_LIMIT = sa.bindparam("limit", type_=sa.Integer)
_IDS: sa.BindParameter[str] = sa.bindparam("ids", expanding=True)

# Either unit of work runs these statements: the worker's hot path uses a Core connection (no
# ORM session to build per transaction), tests and operators' commands a session.
Executor = AsyncConnection | AsyncSession


def _among(column: sa.ColumnElement[str], values: Sequence[str]) -> sa.ColumnElement[bool]:
    # `IN ('a', 'b')` written into the statement (our own status names, never input): an
    # expanding parameter (what `in_` makes of a list) is rendered anew on every execution,
    # a third of the claim's CPU in the worker.
    return column.in_([sa.literal_column(f"'{value}'") for value in values])


def _due_in_order() -> sa.Select[tuple[str]]:
    # Due now, and not behind an unfinished earlier delivery of its job to its route.
    d = DELIVERIES.alias("d")
    p = DELIVERIES.alias("p")
    due = sa.or_(
        sa.and_(_among(d.c.status, ("pending", "retrying")), d.c.next_attempt_at <= _NOW),
        sa.and_(d.c.status == "in_flight", d.c.lease_expires_at <= _NOW),
    )
    earlier_unfinished = (
        sa.select(sa.literal(1))
        .where(
            p.c.job_id == d.c.job_id,
            p.c.route == d.c.route,
            p.c.seq < d.c.seq,
            _among(p.c.status, UNFINISHED),
        )
        .exists()
    )
    return (
        sa.select(d.c.id)
        .where(due, sa.or_(d.c.job_id.is_(None), ~earlier_unfinished))
        .order_by(d.c.next_attempt_at, d.c.seq)
    )


# Statements are built once, at import: building the aliased claim costs about 1 ms of CPU.
# The claim is one statement on both stores: the due rows are picked (and locked, skipping
# rows another worker holds, on PostgreSQL) and leased together.
_LEASE_VALUES = {
    "status": "in_flight",
    "attempts": DELIVERIES.c.attempts + 1,
    "lease_expires_at": _LEASE_UNTIL,
    "updated_at": _NOW,
}
_PICKED = DELIVERIES.c.id.in_(_due_in_order().limit(_LIMIT).with_for_update(skip_locked=True))
_CLAIM = sa.update(DELIVERIES).where(_PICKED).values(_LEASE_VALUES).returning(DELIVERIES.c.id)
_CLAIMED_COLUMNS = (
    DELIVERIES.c.id,
    DELIVERIES.c.attempts.label("attempt"),
    DELIVERIES.c.max_attempts,
    DELIVERIES.c.route,
    DELIVERIES.c.handler,
    DELIVERIES.c.event_id,
    DELIVERIES.c.job_id,
    EVENTS.c.source,
    EVENTS.c.workspace,
    EVENTS.c.raw_body,
    EVENTS.c.received_at,
    DELIVERIES.c.trace_parent,
    EVENTS.c.sealed_with,
)
_CLAIMED = (
    sa.select(*_CLAIMED_COLUMNS)
    .join(EVENTS, EVENTS.c.id == DELIVERIES.c.event_id)
    .where(DELIVERIES.c.id.in_(_IDS))
    .order_by(DELIVERIES.c.seq)
)
# PostgreSQL returns the events' columns from the claim itself (`UPDATE ... FROM events ...
# RETURNING`): one round trip, so a worker can run it outside a transaction of its own.
# SQLite's RETURNING may not name the FROM table, so it reads the claimed rows afterwards.
_CLAIM_RETURNING = (
    sa.update(DELIVERIES)
    .where(_PICKED, EVENTS.c.id == DELIVERIES.c.event_id)
    .values(_LEASE_VALUES)
    .returning(*_CLAIMED_COLUMNS, DELIVERIES.c.seq)
)
# The rows a batch of finishes may touch, locked in one order (by id) so that two workers
# finishing overlapping batches (a stale attempt and its successor) cannot deadlock, and a
# claimer skips them until the batch commits.
_IN_FLIGHT = (
    sa.select(DELIVERIES.c.id, DELIVERIES.c.attempts)
    .where(DELIVERIES.c.id.in_(_IDS), DELIVERIES.c.status == "in_flight")
    .order_by(DELIVERIES.c.id)
    .with_for_update()
)


def _still_ours() -> tuple[sa.ColumnElement[bool], ...]:
    # The attempt a worker claimed is still the delivery's latest and still in flight: a worker
    # whose lease expired and was taken over matches nothing and writes nothing.
    return (
        DELIVERIES.c.id == sa.bindparam("b_id"),
        DELIVERIES.c.attempts == sa.bindparam("b_attempt"),
        DELIVERIES.c.status == "in_flight",
    )


_FINISH = (
    sa.update(DELIVERIES)
    .where(*_still_ours())
    .values(
        status=sa.bindparam("b_status"),
        next_attempt_at=sa.bindparam("b_next_attempt_at"),
        lease_expires_at=None,
        last_error=sa.bindparam("b_last_error"),
        updated_at=sa.bindparam("b_now"),
    )
)
_FINISH_ONE = _FINISH.returning(DELIVERIES.c.id)
# PostgreSQL records a whole batch in one statement, so without a transaction of its own: the
# results come as arrays (sorted by delivery id, so that overlapping batches lock rows in one
# order), the guarded update says which attempts were still ours, and only those are inserted.
_FINISH_ALL = sa.text(
    """
WITH r AS (
    SELECT * FROM unnest(
        CAST(:ids AS varchar[]), CAST(:numbers AS integer[]), CAST(:statuses AS varchar[]),
        CAST(:next_at AS timestamptz[]), CAST(:errors AS text[]),
        CAST(:started AS timestamptz[]), CAST(:durations AS float8[]),
        CAST(:outcomes AS varchar[]), CAST(:details AS text[])
    ) AS r(id, number, status, next_attempt_at, last_error, started_at, duration_ms, outcome,
           detail)
),
done AS (
    UPDATE deliveries AS d
    SET status = r.status, next_attempt_at = r.next_attempt_at, lease_expires_at = NULL,
        last_error = r.last_error, updated_at = :now
    FROM r
    WHERE d.id = r.id AND d.attempts = r.number AND d.status = 'in_flight'
    RETURNING d.id, d.attempts
),
recorded AS (
    INSERT INTO delivery_attempts (delivery_id, number, started_at, duration_ms, outcome, detail)
    SELECT r.id, r.number, r.started_at, r.duration_ms, r.outcome, r.detail
    FROM r JOIN done ON done.id = r.id AND done.attempts = r.number
)
SELECT id, attempts FROM done
"""
)
_RECORD_ATTEMPT = sa.insert(ATTEMPTS)
_RELEASE = (
    sa.update(DELIVERIES)
    .where(*_still_ours())
    .values(
        status=sa.bindparam("b_status"),
        attempts=DELIVERIES.c.attempts - 1,
        lease_expires_at=None,
        next_attempt_at=sa.bindparam("b_now"),
        updated_at=sa.bindparam("b_now"),
    )
)


async def claim(session: Executor, *, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Lease up to `limit` due deliveries to the caller, one attempt each, in queue order. On
    PostgreSQL this is a single statement, atomic without a transaction around it."""
    params = {"now": now, "lease_until": now + lease, "limit": limit}
    if _dialect(session) == "postgresql":
        returned = (await session.execute(_CLAIM_RETURNING, params)).all()
        return [Claimed(*row[:-1]) for row in sorted(returned, key=lambda row: row[-1])]
    ids = list((await session.scalars(_CLAIM, params)).all())
    if not ids:
        return []
    rows = await session.execute(_CLAIMED, {"ids": ids})
    return [Claimed(*row) for row in rows]


def _dialect(session: Executor) -> str:
    if isinstance(session, AsyncConnection):
        return session.dialect.name
    return session.get_bind().dialect.name


async def finish_many(
    session: Executor, results: Sequence[tuple[Claimed, Finish]], *, now: datetime
) -> list[bool]:
    """Record each attempt and move its delivery on, all in the caller's transaction; for each,
    False when the attempt was overtaken (its lease expired and another attempt began), in
    which case nothing of it is written."""
    if not results:
        return []
    if _dialect(session) == "postgresql":
        return await _finish_all(session, results, now)
    if len(results) == 1:
        return [await _finish_one(session, *results[0], now=now)]
    ids = sorted({claimed.id for claimed, _ in results})
    rows = await session.execute(_IN_FLIGHT, {"ids": ids})
    current = {(row.id, row.attempts) for row in rows}
    applied: list[bool] = []
    updates: list[dict[str, object]] = []
    attempts: list[dict[str, object]] = []
    for claimed, result in results:
        key = (claimed.id, claimed.attempt)
        ours = key in current
        current.discard(key)  # one result per attempt, whatever the caller sent
        applied.append(ours)
        if ours:
            updates.append(_finish_params(claimed, result, now))
            attempts.append(_attempt_row(claimed, result))
    if updates:
        await session.execute(_FINISH, updates)
        await session.execute(_RECORD_ATTEMPT, attempts)
    return applied


async def _finish_all(
    session: Executor, results: Sequence[tuple[Claimed, Finish]], now: datetime
) -> list[bool]:
    firsts: dict[
        tuple[str, int], int
    ] = {}  # one result per attempt, whatever the caller sent: the first
    for index, (claimed, _) in enumerate(results):
        firsts.setdefault((claimed.id, claimed.attempt), index)
    rows = [
        _finish_params(*results[index], now) | _attempt_row(*results[index])
        for index in sorted(firsts.values(), key=lambda i: results[i][0].id)
    ]
    params = {
        "ids": [row["b_id"] for row in rows],
        "numbers": [row["b_attempt"] for row in rows],
        "statuses": [row["b_status"] for row in rows],
        "next_at": [row["b_next_attempt_at"] for row in rows],
        "errors": [row["b_last_error"] for row in rows],
        "started": [row["started_at"] for row in rows],
        "durations": [row["duration_ms"] for row in rows],
        "outcomes": [row["outcome"] for row in rows],
        "details": [row["detail"] for row in rows],
        "now": now,
    }
    done = {(row.id, row.attempts) for row in await session.execute(_FINISH_ALL, params)}
    return [
        firsts[claimed.id, claimed.attempt] == index and (claimed.id, claimed.attempt) in done
        for index, (claimed, _) in enumerate(results)
    ]


async def _finish_one(
    session: Executor, claimed: Claimed, result: Finish, *, now: datetime
) -> bool:
    # A lone result (light load) needs no lock taken first: its guarded update says whether it
    # applied, one round trip fewer.
    updated = await session.execute(_FINISH_ONE, _finish_params(claimed, result, now))
    if updated.first() is None:
        return False
    await session.execute(_RECORD_ATTEMPT, _attempt_row(claimed, result))
    return True


def _finish_params(claimed: Claimed, result: Finish, now: datetime) -> dict[str, object]:
    return {
        "b_id": claimed.id,
        "b_attempt": claimed.attempt,
        "b_status": result.status,
        "b_next_attempt_at": result.next_attempt_at or now,
        "b_last_error": None if result.status == "succeeded" else clip(result.detail),
        "b_now": now,
    }


def _attempt_row(claimed: Claimed, result: Finish) -> dict[str, object]:
    return {
        "delivery_id": claimed.id,
        "number": claimed.attempt,
        "started_at": result.started_at,
        "duration_ms": result.duration_ms,
        "outcome": result.outcome,
        "detail": clip(result.detail),
    }


async def finish(session: Executor, claimed: Claimed, result: Finish, *, now: datetime) -> bool:
    """`finish_many` of one attempt."""
    [applied] = await finish_many(session, [(claimed, result)], now=now)
    return applied


async def release(session: Executor, claimed: Sequence[Claimed], *, now: datetime) -> None:
    """Give unstarted or abandoned attempts back (shutdown): due again now, attempt undone. An
    attempt whose result was recorded meanwhile is left alone."""
    if not claimed:
        return
    params = [
        {
            "b_id": item.id,
            "b_attempt": item.attempt,
            "b_status": "retrying" if item.attempt > 1 else "pending",
            "b_now": now,
        }
        for item in claimed
    ]
    await session.execute(_RELEASE, params)


async def queue_stats(session: Executor, *, now: datetime) -> tuple[int, float]:
    """(deliveries not yet finished, seconds the oldest due one has waited)."""
    row = (
        await session.execute(
            sa.select(
                sa.func.count(),
                sa.func.min(DELIVERIES.c.next_attempt_at),
            ).where(DELIVERIES.c.status.in_(UNFINISHED))
        )
    ).one()
    count, oldest = row
    waited = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return int(count), waited
