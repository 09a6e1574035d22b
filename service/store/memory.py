"""The handlers' durable memory: small (scope, key) → value facts every worker process shares,
such as the Slack thread a job's messages go to. The first value kept for a key wins."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.clock import Clock
from service.ports import MemoryUnavailable
from service.store.db import Database, StoreUnavailable
from service.store.dialect import insert_for
from service.store.tables import HANDLER_MEMORY


class StoredMemory:
    """`HandlerMemory` on the service's database."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def recall(self, scope: str, key: str) -> str | None:
        """The value kept under (scope, key), or None."""

        async def read(session: AsyncSession) -> str | None:
            found: str | None = await session.scalar(_value_of(scope, key))
            return found

        try:
            return await self._db.read(read)
        except StoreUnavailable as exc:
            raise MemoryUnavailable(str(exc)) from exc

    async def remember(self, scope: str, key: str, value: str) -> str:
        """Keep `value` unless a value is already kept (race-safe); the kept value."""
        now = self._clock.now()

        async def write(session: AsyncSession) -> str:
            await session.execute(_keep(session, scope, key, value, now))
            kept: str = (await session.scalar(_value_of(scope, key))) or value
            return kept

        try:
            return await self._db.write(write)
        except StoreUnavailable as exc:
            raise MemoryUnavailable(str(exc)) from exc


def _value_of(scope: str, key: str) -> sa.Select[tuple[str]]:
    return sa.select(HANDLER_MEMORY.c.value).where(
        HANDLER_MEMORY.c.scope == scope, HANDLER_MEMORY.c.key == key
    )


def _keep(session: AsyncSession, scope: str, key: str, value: str, now: datetime) -> sa.Insert:
    insert = insert_for(session, HANDLER_MEMORY).values(
        scope=scope, key=key, value=value, created_at=now
    )
    return insert.on_conflict_do_nothing(  # type: ignore[no-any-return]
        index_elements=[HANDLER_MEMORY.c.scope, HANDLER_MEMORY.c.key]
    )
