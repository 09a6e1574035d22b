"""One transaction for a batch of new events: events, duplicates, jobs and deliveries.

The group-commit writer hands a batch of concurrent deliveries here. Each statement is built once
(`BatchStatements`) and run once over the list of its rows, so a batch of 200 events costs the
same round trips as a single one, and a statement that has no rows is not sent. On SQLite (no
round trips: an in-process library): INSERT events, SELECT their tombstones (see
`_undo_purged`), UPDATE duplicates, INSERT jobs, UPDATE jobs (`store/job_moves.py`), INSERT
deliveries. On PostgreSQL: INSERT events, then one statement for all the rest but the moves of
jobs that already exist (`store/batch_pg.py`), then UPDATE jobs. Which rows are repeats of each
other is decided in memory first (`plan`), so no statement ever conflicts with a row of its own
batch. The job moves and the deliveries' routes come decided with each event
(`NewEvent.decision`); this module only writes them, for the events that are new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.batch_pg import AfterInsert, Repeat, delivery_rows, write_rest
from service.store.events import NewEvent
from service.store.job_moves import JobMoveStatements, advance_jobs
from service.store.sealing import PLAINTEXT, Sealer, seal_event
from service.store.tables import DEDUP_TOMBSTONES, DELIVERIES, EVENTS


@dataclass(frozen=True, slots=True)
class Stored:
    """Where one delivery of the batch ended up: its event's id, and whether it was a repeat."""

    event_id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Vanished:
    """The delivery repeats a stored event that was deleted (purged) during the write, and left
    no tombstone (it was older than the dedup retention)."""


WriteOutcome = Stored | Vanished


@dataclass(frozen=True, slots=True)
class Plan:
    """A batch's deliveries grouped by dedup key, first arrival first. `firsts[i]` is the
    index of the first delivery with key i; `repeats[i]` the indexes of its later copies."""

    firsts: list[int]
    repeats: list[list[int]]


def plan(keys: Sequence[str]) -> Plan:
    """Group the deliveries' dedup keys: the first of each key is the one that may be inserted."""
    slot_of: dict[str, int] = {}
    firsts: list[int] = []
    repeats: list[list[int]] = []
    for index, key in enumerate(keys):
        slot = slot_of.get(key)
        if slot is None:
            slot_of[key] = len(firsts)
            firsts.append(index)
            repeats.append([])
        else:
            repeats[slot].append(index)
    return Plan(firsts, repeats)


class BatchStatements:
    """The batch's statements for one dialect, built once per writer."""

    def __init__(self, dialect: str) -> None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self.postgresql = dialect == "postgresql"
        self.insert_events = (
            insert(EVENTS)
            .on_conflict_do_nothing(index_elements=[EVENTS.c.dedup_key])
            .returning(EVENTS.c.id)
        )
        self.count_repeats = (
            sa.update(EVENTS)
            .where(EVENTS.c.dedup_key == sa.bindparam("p_key"))
            .values(
                duplicate_count=EVENTS.c.duplicate_count + sa.bindparam("p_count"),
                last_duplicate_at=sa.bindparam("p_at", type_=EVENTS.c.last_duplicate_at.type),
            )
        )
        self.ids_of_keys = sa.select(EVENTS.c.dedup_key, EVENTS.c.id).where(
            EVENTS.c.dedup_key.in_(sa.bindparam("p_keys", expanding=True))
        )
        self.tombstones_of_keys = sa.select(
            DEDUP_TOMBSTONES.c.dedup_key, DEDUP_TOMBSTONES.c.event_id
        ).where(DEDUP_TOMBSTONES.c.dedup_key.in_(sa.bindparam("p_keys", expanding=True)))
        self.delete_events = sa.delete(EVENTS).where(
            EVENTS.c.id.in_(sa.bindparam("p_ids", expanding=True))
        )
        self.jobs = JobMoveStatements(dialect)
        self.insert_deliveries = sa.insert(DELIVERIES)
        self.max_seq = sa.select(sa.func.coalesce(sa.func.max(DELIVERIES.c.seq), 0))
        self.after_insert = AfterInsert(self.jobs) if self.postgresql else None


async def write_batch(
    conn: AsyncConnection,
    sql: BatchStatements,
    batch: Sequence[NewEvent],
    sealer: Sealer = PLAINTEXT,
) -> list[WriteOutcome]:
    """Store `batch` inside the caller's transaction, applying the job moves and fan-out that
    ingest decided to the events that are new; one outcome per delivery, in order."""
    grouped = plan([new.event.dedup_key for new in batch])
    candidates = [batch[index] for index in grouped.firsts]
    event_rows = [_event_row(new, sealer) for new in candidates]
    inserted = set((await conn.execute(sql.insert_events, event_rows)).scalars())
    fresh_ones = [new for new in candidates if new.id in inserted]
    repeats = _repeats(batch, grouped, inserted)
    conflicted = [repeat.key for repeat in repeats if not repeat.stored_new]
    if sql.after_insert is not None:
        purged, found = await write_rest(conn, sql.after_insert, fresh_ones, repeats)
        if purged:
            undone = [new.id for new in fresh_ones if new.event.dedup_key in purged]
            await conn.execute(sql.delete_events, {"p_ids": undone})
    else:
        purged = await _undo_purged(conn, sql, fresh_ones)
        rows = [
            {"p_key": repeat.key, "p_count": len(repeat.copies), "p_at": repeat.last_at}
            for repeat in repeats
            if repeat.key not in purged  # its event is deleted again: nothing to count on
        ]
        if rows:
            await conn.execute(sql.count_repeats, rows)
        found = {}
        if conflicted:
            ids = await conn.execute(sql.ids_of_keys, {"p_keys": conflicted})
            found = {key: stored for key, stored in ids}
    missing = [key for key in conflicted if key not in found]
    if missing:
        # A purge removed the original during this write (the count above waited for it).
        found |= await _tombstoned(conn, sql, missing)
    if sql.after_insert is None:
        fresh = [new for new in fresh_ones if new.event.dedup_key not in purged]
        moves = [(new.received_at, m) for new in fresh if (m := new.decision.job) is not None]
        await advance_jobs(conn, sql.jobs, moves)
        await _enqueue(conn, sql, fresh)
    return _outcomes(batch, grouped, inserted, purged, found)


def _repeats(batch: Sequence[NewEvent], grouped: Plan, inserted: set[str]) -> list[Repeat]:
    """Every key of the batch with copies to count."""
    found: list[Repeat] = []
    for first, later in zip(grouped.firsts, grouped.repeats, strict=True):
        new = batch[first]
        stored_new = new.id in inserted
        copies = later if stored_new else [first, *later]
        if copies:
            last = max(batch[index].received_at for index in copies)
            found.append(Repeat(new.event.dedup_key, copies, stored_new, last))
    return found


def _outcomes(
    batch: Sequence[NewEvent],
    grouped: Plan,
    inserted: set[str],
    purged: dict[str, str],
    found: dict[str, str],
) -> list[WriteOutcome]:
    outcomes: list[WriteOutcome] = [Vanished()] * len(batch)
    for first, later in zip(grouped.firsts, grouped.repeats, strict=True):
        key = batch[first].event.dedup_key
        if key in purged:
            answer, first_answer = Stored(purged[key], True), Stored(purged[key], True)
        elif batch[first].id in inserted:
            answer, first_answer = Stored(batch[first].id, True), Stored(batch[first].id, False)
        elif key in found:
            answer, first_answer = Stored(found[key], True), Stored(found[key], True)
        else:
            continue  # vanished: see `Vanished`
        outcomes[first] = first_answer
        for index in later:
            outcomes[index] = answer
    return outcomes


async def _undo_purged(
    conn: AsyncConnection, sql: BatchStatements, inserted: Sequence[NewEvent]
) -> dict[str, str]:
    """Delete again the events just inserted whose key a purge left as a tombstone; their keys,
    each with the purged event's id. Such a delivery is a replay: it neither moves a job nor
    fans out.

    Why insert first and look for tombstones after, not the other way round: a purge deletes
    the event and writes its tombstone in one transaction. Looked up first (on PostgreSQL), the
    tombstone could still be uncommitted, and an insert after the purge's commit would find no
    conflict and store a replay as new. Inserted first, the key either conflicts with the live
    event (a duplicate as ever) or waits for the purge's uncommitted delete of it; once the
    insert has returned that purge has committed, and this later statement (READ COMMITTED: a
    snapshot per statement) sees its tombstone. SQLite has one writer: no race there.
    """
    if not inserted:
        return {}
    keys = [new.event.dedup_key for new in inserted]
    purged = await _tombstoned(conn, sql, keys)
    if purged:
        undone = [new.id for new in inserted if new.event.dedup_key in purged]
        await conn.execute(sql.delete_events, {"p_ids": undone})
    return purged


async def _tombstoned(
    conn: AsyncConnection, sql: BatchStatements, keys: list[str]
) -> dict[str, str]:
    rows = await conn.execute(sql.tombstones_of_keys, {"p_keys": keys})
    return {key: event_id for key, event_id in rows}


def _event_row(new: NewEvent, sealer: Sealer) -> dict[str, Any]:
    event = new.event
    return {
        "id": new.id,
        "source": new.source,
        "workspace": new.workspace,
        "dedup_key": event.dedup_key,
        "external_id": event.external_id,
        "type": event.type,
        "job_id": event.job_id,
        "occurred_at": event.occurred_at,
        "received_at": new.received_at,
        # Sizes, keys and hashes come from the clear body; only the body and headers are sealed.
        "body_bytes": len(new.raw_body),
        **seal_event(sealer, new.id, new.raw_body, new.headers),
        "verified": new.verified,
        "is_test": event.is_test,
        "duplicate_count": 0,
        "last_duplicate_at": None,
    }


async def _enqueue(conn: AsyncConnection, sql: BatchStatements, fresh: Sequence[NewEvent]) -> None:
    """SQLite: the new events' deliveries, numbered after the current maximum (one writer,
    BEGIN IMMEDIATE: race-free; PostgreSQL's column default draws from a sequence instead)."""
    rows = [row for _, row in delivery_rows(fresh)]
    if not rows:
        return
    top = (await conn.execute(sql.max_seq)).scalar_one()
    for offset, row in enumerate(rows, start=1):
        row["seq"] = top + offset
    await conn.execute(sql.insert_deliveries, rows)
