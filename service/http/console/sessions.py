"""Console sessions against the store: a cookie opens the console only while its session is
live in `console_sessions`; signing in stores one, logging out and the sessions page (write
scope) revoke one, for every process at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from service.admin_tokens import AdminToken
from service.http.admin.audit import audit_target
from service.http.admin.auth import client_address
from service.http.admin.endpoint import path_id
from service.http.console import session
from service.http.errors import Forbidden, NotFound
from service.services import Services
from service.store import console_sessions
from service.store.console_sessions import ConsoleSession


def _cookie(request: Request, svc: Services) -> session.Session | None:
    return session.verify(request.cookies.get(session.COOKIE), svc.admin_tokens, svc.clock.now())


async def current(request: Request, svc: Services) -> session.Session | None:
    """The session of this request's cookie, when the cookie is valid and the session live."""
    found = _cookie(request, svc)
    if found is None:
        return None
    now = svc.clock.now()

    async def live(s: AsyncSession) -> bool:
        return await console_sessions.is_live(s, found.id, now=now)

    return found if await svc.db.read(live) else None


async def start(request: Request, svc: Services, token: AdminToken) -> str:
    """A new session for `token`, stored; the cookie value."""
    now = svc.clock.now()
    cookie, found = session.issue(token, now)
    new = ConsoleSession(
        id=found.id,
        token_name=token.name,
        created_at=now,
        expires_at=datetime.fromtimestamp(found.expires, UTC),
        revoked_at=None,
        client_address=client_address(request),
    )

    async def store(s: AsyncSession) -> None:
        await console_sessions.open_session(s, new)

    await svc.db.write(store)
    return cookie


async def end(svc: Services, session_id: str) -> bool:
    """Revoke the session `session_id`; False when it was not live."""
    now = svc.clock.now()

    async def work(s: AsyncSession) -> bool:
        return await console_sessions.revoke(s, session_id, now=now)

    return await svc.db.write(work)


async def list_sessions(request: Request, svc: Services) -> dict[str, Any]:
    """The live sessions (for a write-scope viewer only) and which one is the viewer's."""
    found = _cookie(request, svc)
    if found is None or not found.token.can_write:
        raise Forbidden("only a write token may see the console sessions")
    now = svc.clock.now()

    async def read(s: AsyncSession) -> list[ConsoleSession]:
        return await console_sessions.live_sessions(s, now=now)

    return {"items": [_view(s) for s in await svc.db.read(read)], "current": found.id}


def _view(row: ConsoleSession) -> dict[str, Any]:
    # The admin API's field style, which every console page is drawn from.
    return {
        "id": row.id,
        "token": row.token_name,
        "createdAt": row.created_at.isoformat(),
        "expiresAt": row.expires_at.isoformat(),
        "clientAddress": row.client_address,
    }


async def revoke_session(request: Request, svc: Services) -> None:
    """End the session in the path (the console's action checks the write scope and CSRF)."""
    session_id = path_id(request, "session_id", "session")
    audit_target(request, session_id=session_id)
    if not await end(svc, session_id):
        raise NotFound(f"no live session {session_id!r}")
