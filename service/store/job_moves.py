"""Job moves decided by ingest, written in two statements per batch, each run once over its
rows: `INSERT … ON CONFLICT DO NOTHING` (the job's first event creates it), then one `UPDATE`
whose every column is `CASE WHEN rank(status) < :rank`: a forward move sets the status and
brings the event's newest non-empty fields, any other event only fills what is still empty.
Never read-then-write (the database evaluates the rank on the row it locks), so two racing
events for one job cannot move it backwards, on any number of processes. What moves, to which
status and rank, is in the `JobMove`; this module decides nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from service.ids import new_id
from service.job_status import JOB_FIELDS, JOB_TIMES, RANK, JobMove
from service.store.tables import JOBS


def _param(name: str) -> sa.BindParameter[Any]:
    # Prefixed: a bind named like a column is reserved for that column's value in SET clauses.
    return sa.bindparam(f"p_{name}", type_=JOBS.c[name].type)


class JobMoveStatements:
    """The job statements of a batch for one dialect, built once per writer."""

    def __init__(self, dialect: str) -> None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self.insert_jobs = (
            insert(JOBS)
            .on_conflict_do_nothing(index_elements=[JOBS.c.llmtune_job_id])
            .returning(JOBS.c.id)
        )
        job = JOBS.c.llmtune_job_id == sa.bindparam("p_job")
        forward = sa.case(RANK, value=JOBS.c.status, else_=-1) < sa.bindparam("p_rank")

        def moved(column: str, to: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
            return sa.case((forward, to), else_=JOBS.c[column])

        # One statement for both kinds of move (every SET sees the row as it was): the event
        # that moves the job on also brings its newest non-empty fields; any event, late ones
        # included, fills what is still empty and nothing else.
        self.move_jobs = (
            sa.update(JOBS)
            .where(job)
            .values(
                status=moved("status", sa.bindparam("p_status", type_=JOBS.c.status.type)),
                updated_at=moved("updated_at", _param("updated_at")),
                **{
                    name: sa.case(
                        (forward, sa.func.coalesce(_param(name), JOBS.c[name])),
                        else_=sa.func.coalesce(JOBS.c[name], _param(name)),
                    )
                    for name in JOB_FIELDS
                },
                **{name: sa.func.coalesce(JOBS.c[name], _param(name)) for name in JOB_TIMES},
            )
        )


Moves = Sequence[tuple[datetime, JobMove]]


async def advance_jobs(conn: AsyncConnection, sql: JobMoveStatements, moves: Moves) -> None:
    """Create each move's job or move it forward, in arrival order; each move with the time its
    event arrived."""
    if not moves:
        return
    creators = job_creators(moves)
    created = set((await conn.execute(sql.insert_jobs, new_job_rows(moves, creators))).scalars())
    await move_jobs(conn, sql, moves, creators, created)


def job_creators(moves: Moves) -> dict[str, tuple[int, str]]:
    """Per job, the index of its first move in `moves` (only that one may create it) and the id
    its row gets if it does."""
    creators: dict[str, tuple[int, str]] = {}
    for index, (_, move) in enumerate(moves):
        creators.setdefault(move.job_id, (index, new_id("job")))
    return creators


def new_job_rows(moves: Moves, creators: dict[str, tuple[int, str]]) -> list[dict[str, Any]]:
    """The rows the creating moves insert (when their job is not there yet)."""
    return [_job_row(row_id, *moves[index]) for index, row_id in creators.values()]


async def move_jobs(
    conn: AsyncConnection,
    sql: JobMoveStatements,
    moves: Moves,
    creators: dict[str, tuple[int, str]],
    created: set[str],
) -> None:
    """Apply every move but those that created their job (`created`: the new jobs' ids)."""
    made_by = {index for index, row_id in creators.values() if row_id in created}
    updates = [moved for index, moved in enumerate(moves) if index not in made_by]
    if not updates:
        return
    await conn.execute(
        sql.move_jobs,
        [
            {
                "p_job": move.job_id,
                "p_rank": move.rank,
                "p_status": move.status,
                "p_updated_at": at,
                **{f"p_{name}": value for name, value in move.fields.items()},
                **{f"p_{name}": value for name, value in move.times.items()},
            }
            for at, move in updates
        ],
    )


def _job_row(row_id: str, at: datetime, move: JobMove) -> dict[str, Any]:
    return {
        "id": row_id,
        "llmtune_job_id": move.job_id,
        "status": move.status,
        "created_at": at,
        "updated_at": at,
        **move.fields,
        **move.times,
    }
