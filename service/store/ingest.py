"""The one ingest writer: event row, its job, and its deliveries, in one transaction.

Every webhook write goes through `IngestWriter.write`, so batching concurrent requests into one
commit (group commit) can later replace its body without touching the route. It returns only
after the commit, so an acknowledgement always means "durably stored". Any database failure
surfaces as `StorageUnavailable` (503): the sender retries and dedup absorbs the repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.dispatch.routing import Route, routes_for
from service.errors import StorageUnavailable
from service.jobs.state import transition_for
from service.store import deliveries, events, jobs
from service.store.db import STORAGE_ERRORS, describe_storage_error
from service.store.events import NewEvent

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The stored event's id, and whether this delivery was a repeat of it."""

    event_id: str
    duplicate: bool


class IngestWriter:
    """Stores verified, normalized deliveries; one transaction each."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], routes: Sequence[Route]) -> None:
        self._sessions = sessions
        self._routes = tuple(routes)

    async def write(self, new: NewEvent) -> IngestResult:
        """Store `new` (or count it as a duplicate) and commit; raise `StorageUnavailable`."""
        try:
            async with self._sessions() as session, session.begin():
                return await self._write(session, new)
        except STORAGE_ERRORS as exc:
            log.warning(
                "ingest_storage_error",
                error_type=type(exc).__name__,
                cause=describe_storage_error(exc),
            )
            raise StorageUnavailable("the event store is unavailable; retry later") from exc

    async def _write(self, session: AsyncSession, new: NewEvent) -> IngestResult:
        event = new.event
        if not await events.insert_event(session, new):
            existing = await events.count_duplicate(
                session, dedup_key=event.dedup_key, at=new.received_at
            )
            if existing is None:
                # The original vanished between the conflict and the update (a purge): retry.
                raise StorageUnavailable("the event store changed underneath; retry later")
            return IngestResult(event_id=existing, duplicate=True)
        transition = transition_for(event.type)
        if transition is not None and event.job_id is not None and not event.is_test:
            await jobs.advance_job(session, event=event, transition=transition, at=new.received_at)
        await deliveries.enqueue(
            session,
            event_id=new.id,
            routes=routes_for(event.type, self._routes),
            at=new.received_at,
        )
        return IngestResult(event_id=new.id, duplicate=False)
