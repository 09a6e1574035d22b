"""Admin authentication against a real server (uvicorn): wrong tokens are throttled per client
address while the right one still works, and a logged-out console cookie opens nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.http.console.session import COOKIE
from tests.e2e.server import Server, receiver_env, running_server
from tests.helpers import ADMIN_TOKEN, AUTH, SQLITE_ONLY

pytestmark = pytest.mark.e2e

CONSOLE = "/admin/console"


@pytest.fixture
def server(engine: AsyncEngine, db_url: str, tmp_path: Path) -> Iterator[Server]:
    """A configured receiver on `db_url` (emptied by `engine`)."""
    with running_server(tmp_path, receiver_env(db_url), "--no-init-env") as running:
        yield running


def client(server: Server, **cookies: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=10, trust_env=False, cookies=cookies)


@SQLITE_ONLY
def test_wrong_bearer_tokens_are_throttled(server: Server) -> None:
    """40 wrong tokens: 401 ten times, then 429 with Retry-After; the right token gets 200."""
    wrong = {"Authorization": "Bearer wrong-token-0123456789"}
    with client(server) as http:
        statuses = [http.get("/admin/events", headers=wrong).status_code for _ in range(40)]
        throttled = http.get("/admin/events", headers=wrong)
        assert http.get("/admin/events", headers=AUTH).status_code == 200
        metrics = http.get("/metrics").text
    assert statuses == [401] * 10 + [429] * 30
    assert throttled.json()["error"]["code"] == "TOO_MANY_ATTEMPTS"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert 'llmtune_admin_auth_failures_total{outcome="throttled",surface="api"} 31.0' in metrics


@SQLITE_ONLY
def test_logged_out_cookie_opens_nothing(server: Server) -> None:
    """Sign in, keep a copy of the cookie, log out: the copy leads to the sign-in page."""
    with client(server) as browser:
        form = browser.get(f"{CONSOLE}/login").text
        nonce = re.search(r'name="login_csrf" value="([^"]*)"', form)
        assert nonce is not None
        data = {"token": ADMIN_TOKEN, "login_csrf": nonce.group(1)}
        assert browser.post(f"{CONSOLE}/login", data=data).status_code == 303
        cookie = browser.cookies[COOKIE]
        page = browser.get(f"{CONSOLE}/events")
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]*)"', page.text)
        assert csrf is not None
        assert browser.post(f"{CONSOLE}/logout", data={"csrf": csrf.group(1)}).status_code == 303
    with client(server, **{COOKIE: cookie}) as copy:
        response = copy.get(f"{CONSOLE}/events")
    assert response.status_code == 303
    assert response.headers["location"] == f"{CONSOLE}/login"
