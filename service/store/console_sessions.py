"""Console sessions (`console_sessions`): open one at sign-in, check it on each request, revoke
it (logout, the sessions page), list the live ones. Expired rows go when the next one opens.

The cookie proves who signed in (`service.http.console.session`); a row here says the session
has not been ended since, which every process and replica sees the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.tables import CONSOLE_SESSIONS

LIST_LIMIT = 200


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """One console sign-in, as stored."""

    id: str
    token_name: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    client_address: str | None


async def open_session(session: AsyncSession, new: ConsoleSession) -> None:
    """Store `new`, and forget sessions that expired before it was created."""
    await session.execute(
        sa.delete(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.expires_at <= new.created_at)
    )
    await session.execute(
        sa.insert(CONSOLE_SESSIONS).values(
            id=new.id,
            token_name=new.token_name,
            created_at=new.created_at,
            expires_at=new.expires_at,
            revoked_at=new.revoked_at,
            client_address=new.client_address,
        )
    )


async def is_live(session: AsyncSession, session_id: str, *, now: datetime) -> bool:
    """True when the session is stored, not revoked and not expired at `now`."""
    found = await session.scalar(
        sa.select(CONSOLE_SESSIONS.c.id).where(
            CONSOLE_SESSIONS.c.id == session_id,
            CONSOLE_SESSIONS.c.revoked_at.is_(None),
            CONSOLE_SESSIONS.c.expires_at > now,
        )
    )
    return found is not None


async def revoke(session: AsyncSession, session_id: str, *, now: datetime) -> bool:
    """End the session at `now`; False when there is no live session with that id."""
    result = await session.execute(
        sa.update(CONSOLE_SESSIONS)
        .where(
            CONSOLE_SESSIONS.c.id == session_id,
            CONSOLE_SESSIONS.c.revoked_at.is_(None),
            CONSOLE_SESSIONS.c.expires_at > now,
        )
        .values(revoked_at=now)
        .returning(CONSOLE_SESSIONS.c.id)
    )
    return result.first() is not None


async def live_sessions(session: AsyncSession, *, now: datetime) -> list[ConsoleSession]:
    """Sessions neither revoked nor expired at `now`, newest first (at most `LIST_LIMIT`)."""
    rows = await session.execute(
        sa.select(CONSOLE_SESSIONS)
        .where(CONSOLE_SESSIONS.c.revoked_at.is_(None), CONSOLE_SESSIONS.c.expires_at > now)
        .order_by(CONSOLE_SESSIONS.c.created_at.desc(), CONSOLE_SESSIONS.c.id.desc())
        .limit(LIST_LIMIT)
    )
    return [ConsoleSession(**row._mapping) for row in rows]
