"""The one ingest writer: event row, its job, and its deliveries, in one transaction.

Every source's events are written by `IngestWriter.write` (called by the ingest service), so
batching concurrent requests into one commit (group commit) can later replace its body without
touching any caller. It returns only after the commit, so an acknowledgement always means
"durably stored". Any database failure surfaces as `StoreUnavailable`: the sender retries and
dedup absorbs the repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from service.dispatch.routing import Route, routes_for
from service.jobs.state import transition_for
from service.store import deliveries, events, jobs
from service.store.db import Database, StoreUnavailable
from service.store.events import NewEvent


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The stored event's id, and whether this delivery was a repeat of it."""

    event_id: str
    duplicate: bool


class IngestWriter:
    """Stores verified, normalized events; one transaction each."""

    def __init__(
        self,
        db: Database,
        routes: Sequence[Route],
        *,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._routes = tuple(routes)
        self._on_commit = on_commit

    async def write(self, new: NewEvent) -> WriteResult:
        """Store `new` (or count it as a duplicate) and commit; raise `StoreUnavailable`."""
        result = await self._db.write(lambda session: self._write(session, new))
        if not result.duplicate and self._on_commit is not None:
            self._on_commit()  # wake this process's dispatch worker
        return result

    async def _write(self, session: AsyncSession, new: NewEvent) -> WriteResult:
        event = new.event
        if not await events.insert_event(session, new):
            existing = await events.count_duplicate(
                session, dedup_key=event.dedup_key, at=new.received_at
            )
            if existing is None:
                # The original vanished between the conflict and the update (a purge): retry.
                raise StoreUnavailable("the stored original vanished during the write")
            return WriteResult(event_id=existing, duplicate=True)
        transition = transition_for(event.type)
        if transition is not None and event.job_id is not None and not event.is_test:
            await jobs.advance_job(session, event=event, transition=transition, at=new.received_at)
        await deliveries.enqueue(
            session,
            event_id=new.id,
            job_id=event.job_id,
            routes=routes_for(event.type, self._routes, new.workspace),
            at=new.received_at,
        )
        return WriteResult(event_id=new.id, duplicate=False)
