"""The console sessions store: live until revoked or expired, expired rows forgotten when a new
session opens, listed newest first. Both databases."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.store import console_sessions as store
from service.store.console_sessions import ConsoleSession
from tests.helpers import T0, single_engine_database

HOUR = timedelta(hours=1)


def opened(session_id: str, hours_ago: int = 0, lifetime: timedelta = 8 * HOUR) -> ConsoleSession:
    created = T0 - hours_ago * HOUR
    return ConsoleSession(session_id, "ops", created, created + lifetime, None, "10.0.0.1")


async def test_live_until_revoked_or_expired(engine: AsyncEngine) -> None:
    """A session is live after opening; revoking ends it once; expiry ends it too."""
    db = single_engine_database(engine)

    async def work(s: AsyncSession) -> list[bool]:
        await store.open_session(s, opened("ses_01"))
        await store.open_session(s, opened("ses_02"))
        return [
            await store.is_live(s, "ses_01", now=T0),
            await store.revoke(s, "ses_01", now=T0),
            await store.is_live(s, "ses_01", now=T0),
            await store.revoke(s, "ses_01", now=T0),  # already ended
            await store.revoke(s, "ses_99", now=T0),  # never existed
            await store.is_live(s, "ses_02", now=T0 + 8 * HOUR),  # expired
        ]

    assert await db.write(work) == [True, True, False, False, False, False]


async def test_opening_forgets_expired_sessions_and_lists_newest_first(
    engine: AsyncEngine,
) -> None:
    """Rows expired before a new session opens are deleted; the list holds live ones only."""
    db = single_engine_database(engine)

    async def work(s: AsyncSession) -> tuple[list[str], int]:
        await store.open_session(s, opened("ses_0a", hours_ago=10))  # expired 2 h ago
        await store.open_session(s, opened("ses_0b", hours_ago=2))
        await store.open_session(s, opened("ses_0c"))
        live = [row.id for row in await store.live_sessions(s, now=T0)]
        count = await s.scalar(sa.text("SELECT COUNT(*) FROM console_sessions"))
        return live, int(count or 0)

    assert await db.write(work) == (["ses_0c", "ses_0b"], 2)
