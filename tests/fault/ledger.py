"""The ledger check: the load generator's records against the database.

Every acknowledged event is stored exactly once, under the `eventId` it was acknowledged with
(an event acknowledged twice, a retry answered `duplicate: true`, has one id). The tables are
read through a connection of their own (NullPool), never through the service.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.fault.load import Event, Record


def unacknowledged(ledger: Iterable[Record]) -> list[Event]:
    """The events sent but never acknowledged, once each, in the order first sent."""
    records = list(ledger)
    acked = {record.event.key for record in records if record.ok}
    waiting: dict[tuple[str, str], Event] = {}
    for record in records:
        if record.event.key not in acked:
            waiting.setdefault(record.event.key, record.event)
    return list(waiting.values())


@dataclass(frozen=True, slots=True)
class Stored:
    """One row of the events table."""

    id: str
    type: str
    job_id: str
    duplicate_count: int


async def stored_events(db_url: str, job_prefix: str) -> list[Stored]:
    """Every stored event whose job id starts with `job_prefix-`."""
    engine = create_async_engine(db_url, poolclass=NullPool)
    query = sa.text(
        "SELECT id, type, job_id, duplicate_count FROM events WHERE job_id LIKE :prefix"
    )
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(query, {"prefix": f"{job_prefix}-%"})
            return [Stored(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]
    finally:
        await engine.dispose()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The ledger against the table: counts, and what is wrong (nothing, if `problems` is empty)."""

    requests: int
    sent: int  # distinct events posted at least once
    acked: int  # distinct events acknowledged at least once
    stored: int  # distinct sent events in the table
    lost: int  # acknowledged, not stored
    duplicates: int  # rows beyond one per event
    mismatched: int  # acknowledged under an eventId that is not its row's
    dup_answers: int  # answers with "duplicate": true
    server_errors: int  # 5xx answers other than 503 (a 503 asks the sender to retry)
    hung: int  # requests without an answer within the client's timeout
    problems: tuple[str, ...]

    @property
    def stored_unacked(self) -> int:
        """Stored though never acknowledged (in flight at a crash or cut): the sender retries."""
        return self.stored - (self.acked - self.lost)

    def line(self) -> str:
        """The summary figures, one line."""
        return (
            f"requests={self.requests} sent={self.sent} acked={self.acked} stored={self.stored} "
            f"lost={self.lost} duplicates={self.duplicates} mismatched={self.mismatched} "
            f"dup_answers={self.dup_answers} stored_unacked={self.stored_unacked} "
            f"5xx={self.server_errors} hung={self.hung}"
        )


def check(records: Sequence[Record], stored: Sequence[Stored]) -> Verdict:
    """Every acknowledged event stored exactly once, under the `eventId` it was acknowledged
    with; an event acknowledged twice (a retry) has one id."""
    rows: defaultdict[tuple[str, str], list[Stored]] = defaultdict(list)
    for row in stored:
        rows[(row.type, row.job_id)].append(row)
    sent = {record.event.key for record in records}
    acked_ids: defaultdict[tuple[str, str], set[str | None]] = defaultdict(set)
    for record in records:
        if record.ok:
            acked_ids[record.event.key].add(record.event_id)
    lost = [key for key in acked_ids if key not in rows]
    duplicates = sum(len(found) - 1 for found in rows.values())
    mismatched = [
        key
        for key, ids in acked_ids.items()
        if key in rows and ids != {row.id for row in rows[key]}
    ]
    server_errors = sum(1 for r in records if r.status and r.status >= 500 and r.status != 503)
    hung = sum(1 for record in records if record.hung)
    problems = [
        f"{len(lost)} acknowledged but not stored (e.g. {lost[:3]})" if lost else "",
        f"{server_errors} answers 5xx other than 503" if server_errors else "",
        f"{hung} requests without an answer within the timeout" if hung else "",
        f"{duplicates} events stored more than once" if duplicates else "",
        f"{len(mismatched)} acknowledged under another eventId (e.g. {mismatched[:3]})"
        if mismatched
        else "",
        f"{len(rows.keys() - sent)} stored events never sent" if rows.keys() - sent else "",
    ]
    return Verdict(
        requests=len(records),
        sent=len(sent),
        acked=len(acked_ids),
        stored=len(rows.keys() & sent),
        lost=len(lost),
        duplicates=duplicates,
        mismatched=len(mismatched),
        dup_answers=sum(1 for record in records if record.ok and record.duplicate),
        server_errors=server_errors,
        hung=hung,
        problems=tuple(problem for problem in problems if problem),
    )


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """One row of the deliveries table (the outbox)."""

    id: str
    route: str
    job_id: str | None
    status: str
    attempts: int


async def delivery_states(db_url: str) -> list[DeliveryState]:
    """Every delivery, oldest first."""
    engine = create_async_engine(db_url, poolclass=NullPool)
    query = sa.text("SELECT id, route, job_id, status, attempts FROM deliveries ORDER BY seq")
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(query)
            return [DeliveryState(str(r[0]), str(r[1]), r[2], str(r[3]), int(r[4])) for r in rows]
    finally:
        await engine.dispose()


async def unrecorded_attempts(db_url: str) -> dict[str, int]:
    """Deliveries with attempts that were claimed but never recorded (a worker died during
    them), and how many."""
    engine = create_async_engine(db_url, poolclass=NullPool)
    query = sa.text(
        "SELECT d.id, d.attempts - count(a.number) FROM deliveries d "
        "LEFT JOIN delivery_attempts a ON a.delivery_id = d.id GROUP BY d.id, d.attempts"
    )
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(query)
            return {str(r[0]): int(r[1]) for r in rows if r[1]}
    finally:
        await engine.dispose()


async def failed_attempts(db_url: str) -> dict[str, list[str]]:
    """Deliveries with a recorded attempt that did not succeed, and each such attempt's detail."""
    engine = create_async_engine(db_url, poolclass=NullPool)
    query = sa.text(
        "SELECT delivery_id, coalesce(detail, outcome) FROM delivery_attempts "
        "WHERE outcome <> 'ok' ORDER BY delivery_id, number"
    )
    failed: defaultdict[str, list[str]] = defaultdict(list)
    try:
        async with engine.connect() as connection:
            for delivery_id, detail in await connection.execute(query):
                failed[str(delivery_id)].append(str(detail))
    finally:
        await engine.dispose()
    return dict(failed)
