"""PostgreSQL: what a batch does after its INSERT of events, in one statement (one round trip).

One statement, so one snapshot, taken after the INSERT (`store/batch.py` says why tombstones are
looked for only then): it counts the repeats and returns the id each repeated key is stored
under, finds the tombstones of the keys just inserted, creates the jobs of the new events' first
moves, queues the new events' deliveries and wakes the workers at commit. Rows travel as one
array per column (`unnest`), so the statement's text depends on no batch size and stays prepared.
A new event whose key has a tombstone is a replay: it creates no job and queues nothing (the
caller deletes it again). The moves of jobs that already exist need a later statement, which sees
the jobs created here: the caller runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.deliveries import NOTIFY_CHANNEL, new_delivery
from service.store.events import NewEvent
from service.store.job_moves import (
    JobMoveStatements,
    advance_jobs,
    job_creators,
    move_jobs,
    new_job_rows,
)
from service.store.tables import DELIVERIES, JOBS, UTCDateTime

Keyed = list[tuple[str, dict[str, Any]]]  # rows, each with its event's dedup key


@dataclass(frozen=True, slots=True)
class Repeat:
    """A key of the batch with copies to count: the copies' indexes, the latest arrival among
    them, and whether its first delivery was stored new (if not, every delivery of the key is a
    copy of an event stored before)."""

    key: str
    copies: list[int]
    stored_new: bool
    last_at: datetime


def delivery_rows(fresh: Sequence[NewEvent]) -> Keyed:
    """One `pending` delivery per new event and target route, due now, in arrival then route
    order, each with its event's dedup key."""
    return [
        (
            new.event.dedup_key,
            new_delivery(
                event_id=new.id,
                job_id=new.event.job_id,
                route=route,
                at=new.received_at,
                trace_parent=new.trace_parent,
            ),
        )
        for new in fresh
        for route in new.decision.targets
    ]


class AfterInsert:
    """The statement for each shape of batch (with or without jobs, deliveries), made once."""

    def __init__(self, jobs: JobMoveStatements) -> None:
        self.jobs = jobs
        self._made: dict[tuple[tuple[str, ...], tuple[str, ...]], sa.TextClause] = {}

    def statement(
        self, dialect: Dialect, job_columns: tuple[str, ...], delivery_columns: tuple[str, ...]
    ) -> sa.TextClause:
        """The statement for rows with these columns (empty: no such rows)."""
        shape = (job_columns, delivery_columns)
        made = self._made.get(shape)
        if made is None:
            made = self._made[shape] = _statement(dialect, job_columns, delivery_columns)
        return made


def _unnest(
    dialect: Dialect, table: sa.Table, columns: tuple[str, ...], alias: str
) -> tuple[str, str, list[Any]]:
    # The column list, the SELECT list and the FROM item of `INSERT INTO table ... SELECT`.
    arrays: list[str] = []
    values: list[str] = []
    binds: list[Any] = []
    for name in columns:
        column = table.c[name]
        bind = f"{alias}_{name}"
        if isinstance(column.type, sa.JSON):
            # Serialized here (an array of json needs its own codec): text in, JSON out.
            arrays.append(f"CAST(:{bind} AS TEXT[])")
            binds.append(sa.bindparam(bind, type_=postgresql.ARRAY(sa.Text)))
            values.append(f"CAST({alias}.{name} AS JSON)")
        else:
            arrays.append(f"CAST(:{bind} AS {column.type.compile(dialect=dialect)}[])")
            binds.append(sa.bindparam(bind, type_=postgresql.ARRAY(column.type)))
            values.append(f"{alias}.{name}")
    arrays.append(f"CAST(:{alias}_event_key AS TEXT[])")
    binds.append(sa.bindparam(f"{alias}_event_key", type_=postgresql.ARRAY(sa.Text)))
    source = (
        f"unnest({', '.join(arrays)}) WITH ORDINALITY AS {alias}({', '.join(columns)}, "
        f"event_key, n) WHERE NOT EXISTS "
        f"(SELECT FROM purged WHERE purged.dedup_key = {alias}.event_key) ORDER BY {alias}.n"
    )
    return ", ".join(columns), f"{', '.join(values)} FROM {source}", binds


def _statement(
    dialect: Dialect, job_columns: tuple[str, ...], delivery_columns: tuple[str, ...]
) -> sa.TextClause:
    parts = [
        """repeated AS (
            UPDATE events
            SET duplicate_count = events.duplicate_count + r.copies, last_duplicate_at = r.at
            FROM unnest(
                CAST(:p_keys AS TEXT[]), CAST(:p_counts AS INTEGER[]), CAST(:p_ats AS TIMESTAMPTZ[])
            ) AS r(key, copies, at)
            WHERE events.dedup_key = r.key
            RETURNING events.dedup_key, events.id
        )""",
        """purged AS (
            SELECT dedup_key, event_id FROM dedup_tombstones
            WHERE dedup_key = ANY(CAST(:p_inserted AS TEXT[]))
        )""",
        "wake AS (SELECT pg_notify(:p_channel, '') WHERE CAST(:p_wake AS BOOLEAN))",
    ]
    answers = [
        "SELECT 'repeat', dedup_key, id FROM repeated",
        "SELECT 'tombstone', dedup_key, event_id FROM purged",
        "SELECT 'wake', '', '' FROM wake",
    ]
    binds: list[Any] = [
        sa.bindparam("p_keys", type_=postgresql.ARRAY(sa.Text)),
        sa.bindparam("p_counts", type_=postgresql.ARRAY(sa.Integer)),
        sa.bindparam("p_ats", type_=postgresql.ARRAY(UTCDateTime())),
        sa.bindparam("p_channel", value=NOTIFY_CHANNEL, type_=sa.Text),
        sa.bindparam("p_wake", type_=sa.Boolean),
        sa.bindparam("p_inserted", type_=postgresql.ARRAY(sa.Text)),
    ]
    if job_columns:
        columns, select, more = _unnest(dialect, JOBS, job_columns, "j")
        parts.append(
            f"created AS (INSERT INTO jobs ({columns}) SELECT {select} "
            "ON CONFLICT (llmtune_job_id) DO NOTHING RETURNING jobs.id)"
        )
        answers.append("SELECT 'job', id, '' FROM created")
        binds += more
    if delivery_columns:
        columns, select, more = _unnest(dialect, DELIVERIES, delivery_columns, "d")
        parts.append(f"queued AS (INSERT INTO deliveries ({columns}) SELECT {select})")
        binds += more
    text = f"WITH {', '.join(parts)} {' UNION ALL '.join(answers)}"
    return sa.text(text).bindparams(*binds)


def _arrays(alias: str, columns: tuple[str, ...], table: sa.Table, rows: Keyed) -> dict[str, Any]:
    params: dict[str, Any] = {f"{alias}_event_key": [key for key, _ in rows]}
    for name in columns:
        values = [row[name] for _, row in rows]
        if isinstance(table.c[name].type, sa.JSON):
            values = [None if v is None else orjson.dumps(v).decode() for v in values]
        params[f"{alias}_{name}"] = values
    return params


async def write_rest(
    conn: AsyncConnection,
    sql: AfterInsert,
    fresh: Sequence[NewEvent],
    repeats: Sequence[Repeat],
) -> tuple[dict[str, str], dict[str, str]]:
    """Everything after the INSERT for the events it stored (`fresh`): the purged keys (their
    events deleted again by the caller) with their tombstones' ids, and the stored id of each
    repeated key. A purged key's copies are counted on its new event, deleted right after."""
    moves = [(new.received_at, move) for new in fresh if (move := new.decision.job) is not None]
    move_keys = [new.event.dedup_key for new in fresh if new.decision.job is not None]
    creators = job_creators(moves)
    jobs: Keyed = [
        (move_keys[index], row)
        for (index, _), row in zip(creators.values(), new_job_rows(moves, creators), strict=True)
    ]
    deliveries = delivery_rows(fresh)
    job_columns = tuple(jobs[0][1]) if jobs else ()
    delivery_columns = tuple(deliveries[0][1]) if deliveries else ()
    params = {
        "p_keys": [repeat.key for repeat in repeats],
        "p_counts": [len(repeat.copies) for repeat in repeats],
        "p_ats": [repeat.last_at for repeat in repeats],
        "p_wake": bool(deliveries),
        "p_inserted": [new.event.dedup_key for new in fresh],
        **_arrays("j", job_columns, JOBS, jobs),
        **_arrays("d", delivery_columns, DELIVERIES, deliveries),
    }
    purged: dict[str, str] = {}
    found: dict[str, str] = {}
    created: set[str] = set()
    statement = sql.statement(conn.dialect, job_columns, delivery_columns)
    for kind, key, value in await conn.execute(statement, params):
        if kind == "tombstone":
            purged[key] = value
        elif kind == "repeat":
            found[key] = value
        elif kind == "job":
            created.add(key)
    if purged:
        # A replay's move was skipped, and with it maybe the creation of a job that a later
        # event of this batch moves: apply the others' moves in full (forward-only moves are
        # idempotent, so those already applied change nothing).
        kept = [moved for moved, key in zip(moves, move_keys, strict=True) if key not in purged]
        await advance_jobs(conn, sql.jobs, kept)
    else:
        await move_jobs(conn, sql.jobs, moves, creators, created)
    return purged, found
