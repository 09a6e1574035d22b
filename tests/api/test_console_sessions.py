"""Console sessions live in the database: logging out ends a session for every process, an
expired one opens nothing, and a write token lists and revokes sessions (a read token gets 403).
Both databases."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from service.clock import FakeClock
from service.http.console.session import COOKIE, LIFETIME_SECONDS
from tests.api.test_console import CONSOLE, csrf, hidden, login
from tests.helpers import ADMIN_TOKEN, T0, make_settings, running_app

READ_TOKEN = "read-only-console-token"
TOKENS = [ADMIN_TOKEN, f"viewer:read:{READ_TOKEN}"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def client(
    engine: AsyncEngine, db_url: str, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(db_url, admin_tokens=TOKENS)
    async with running_app(settings, engine, clock=clock) as client:
        yield client


async def signed_in(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> str:
    """Sign `client` in; the session cookie's value."""
    assert (await login(client, token)).status_code == 303
    value = client.cookies.get(COOKIE)
    assert value is not None
    return value


async def opens(client: httpx.AsyncClient, cookie: str) -> bool:
    """Whether `cookie`, sent by a browser of its own to `client`'s app, opens a console page."""
    transport = client._transport
    async with httpx.AsyncClient(
        transport=transport, base_url="http://receiver", cookies={COOKIE: cookie}
    ) as browser:
        response = await browser.get(f"{CONSOLE}/events")
    if response.status_code == 303:
        assert response.headers["location"] == f"{CONSOLE}/login"
        return False
    assert response.status_code == 200
    return True


class TestLogout:
    async def test_the_old_cookie_no_longer_opens_the_console(
        self, client: httpx.AsyncClient
    ) -> None:
        """After logging out, the very cookie sent again (as a copy would be) is refused."""
        cookie = await signed_in(client)
        assert await opens(client, cookie)
        response = await client.post(f"{CONSOLE}/logout", data={"csrf": await csrf(client)})
        assert response.status_code == 303
        client.cookies.clear()
        assert not await opens(client, cookie)

    async def test_logout_ends_the_session_in_every_process(
        self, client: httpx.AsyncClient, engine: AsyncEngine, db_url: str, clock: FakeClock
    ) -> None:
        """A second app on the same database (another worker or replica) refuses it too."""
        cookie = await signed_in(client)
        settings = make_settings(db_url, admin_tokens=TOKENS)
        async with running_app(settings, engine, clock=clock) as other:
            assert await opens(other, cookie)
            await client.post(f"{CONSOLE}/logout", data={"csrf": await csrf(client)})
            assert not await opens(other, cookie)

    async def test_an_expired_session_opens_nothing(
        self, client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        """Past its lifetime a session's cookie leads to the sign-in page."""
        cookie = await signed_in(client)
        clock.advance(timedelta(seconds=LIFETIME_SECONDS + 1))
        client.cookies.clear()
        assert not await opens(client, cookie)


class TestSessionsPage:
    async def test_lists_live_sessions_and_revokes_one(self, client: httpx.AsyncClient) -> None:
        """A writer sees every live session, marks its own, and revoking another ends that one
        at once (audited)."""
        other = await signed_in(client)
        client.cookies.clear()
        mine = await signed_in(client)
        assert mine != other
        page = await client.get(f"{CONSOLE}/sessions")
        assert page.status_code == 200
        assert page.text.count("Revoke</button>") == 2
        assert "this session" in page.text
        assert page.text.count("<td>token-1</td>") == 2
        actions = [a for a in _revoke_actions(page.text) if a not in _own_row(page.text)]
        [target] = actions
        with capture_logs() as lines:
            response = await client.post(target, data={"csrf": hidden(page.text, "csrf")})
        assert response.status_code == 303
        assert "done=revoked" in response.headers["location"]
        [line] = [x for x in lines if x["event"] == "admin_action"]
        assert (line["action"], line["status"]) == ("console_revoke_session", 303)
        assert not await opens(client, other)
        assert await opens(client, mine)
        assert (await client.get(f"{CONSOLE}/sessions")).text.count("Revoke</button>") == 1

    async def test_revoking_an_unknown_session_is_404(self, client: httpx.AsyncClient) -> None:
        """A session id that is not live answers the error page, not a crash."""
        await signed_in(client)
        token = await csrf(client)
        response = await client.post(
            f"{CONSOLE}/sessions/ses_0123abcd/revoke", data={"csrf": token}
        )
        assert response.status_code == 404

    async def test_read_scope_gets_403(self, client: httpx.AsyncClient) -> None:
        """A read-only session may neither list nor revoke sessions."""
        writer = await signed_in(client)
        client.cookies.clear()
        await signed_in(client, READ_TOKEN)
        listing = await client.get(f"{CONSOLE}/sessions")
        assert listing.status_code == 403
        assert "Sessions</a>" not in (await client.get(f"{CONSOLE}/events")).text
        own_csrf = await csrf(client)
        for target in ("ses_0123abcd", "ses_" + "0" * 32):
            response = await client.post(
                f"{CONSOLE}/sessions/{target}/revoke", data={"csrf": own_csrf}
            )
            assert response.status_code == 403
        assert await opens(client, writer)


def _revoke_actions(page: str) -> list[str]:
    """The revoke forms' targets, in page order."""
    return re.findall(r'action="(/admin/console/sessions/[^"]+/revoke)"', page)


def _own_row(page: str) -> str:
    """The table row marked as the viewer's own session."""
    [row] = [r for r in page.split("<tr>") if "this session" in r]
    return row
