"""Failed admin authentications are throttled per client address, on the admin API and the
console's sign-in alike (one throttle per app), and the right token still gets in."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from starlette.types import ASGIApp

from service.clock import FakeClock
from tests.helpers import ADMIN_TOKEN, AUTH, T0, make_settings, started_app

WRONG = {"Authorization": "Bearer wrong-token-0123456789"}
CONSOLE = "/admin/console"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def app(sqlite_url: str, clock: FakeClock) -> AsyncIterator[ASGIApp]:
    async with started_app(make_settings(sqlite_url), clock=clock) as app:
        yield app


@pytest.fixture
async def client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    async with from_address(app, "10.0.0.1") as client:
        yield client


def from_address(app: ASGIApp, host: str) -> httpx.AsyncClient:
    """A client whose requests come from `host` (what uvicorn would put in `request.client`)."""
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://receiver")


async def login(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await client.get(f"{CONSOLE}/login")
    found = re.search(r'name="login_csrf" value="([^"]*)"', form.text)
    assert found is not None
    data = {"token": token, "login_csrf": found.group(1)}
    return await client.post(f"{CONSOLE}/login", data=data)


def metric(text: str, surface: str, outcome: str) -> float:
    """The value of `llmtune_admin_auth_failures_total` for one surface and outcome."""
    labels = f'outcome="{outcome}",surface="{surface}"'
    found = re.search(rf"^llmtune_admin_auth_failures_total\{{{labels}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


class TestAdminApi:
    async def test_wrong_tokens_are_throttled_the_right_one_is_not(
        self, client: httpx.AsyncClient
    ) -> None:
        """40 wrong tokens: 401 ten times, then 429 with Retry-After; the right token gets 200."""
        answers = [await client.get("/admin/events", headers=WRONG) for _ in range(40)]
        assert [a.status_code for a in answers] == [401] * 10 + [429] * 30
        throttled = answers[10]
        assert throttled.json()["error"]["code"] == "TOO_MANY_ATTEMPTS"
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
        assert (await client.get("/admin/events", headers=AUTH)).status_code == 200
        text = (await client.get("/metrics")).text
        assert metric(text, "api", "refused") == 10
        assert metric(text, "api", "throttled") == 30

    async def test_no_token_is_not_counted(self, client: httpx.AsyncClient) -> None:
        """Requests without any token stay 401 and do not bring the throttle closer."""
        for _ in range(20):
            assert (await client.get("/admin/events")).status_code == 401
        answers = [await client.get("/admin/events", headers=WRONG) for _ in range(11)]
        assert [a.status_code for a in answers] == [401] * 10 + [429]

    async def test_other_addresses_and_later_minutes_are_not_throttled(
        self, app: ASGIApp, client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        """The limit is per client address, and a minute later the address may try again."""
        for _ in range(11):
            await client.get("/admin/events", headers=WRONG)
        async with from_address(app, "10.0.0.2") as other:
            assert (await other.get("/admin/events", headers=WRONG)).status_code == 401
        clock.advance(timedelta(seconds=61))
        assert (await client.get("/admin/events", headers=WRONG)).status_code == 401


class TestConsole:
    async def test_wrong_sign_ins_are_throttled_the_right_one_is_not(
        self, client: httpx.AsyncClient
    ) -> None:
        """Ten wrong tokens on the sign-in form, then 429 with Retry-After; the right one works."""
        answers = [await login(client, "wrong-token-0123456789") for _ in range(12)]
        assert [a.status_code for a in answers] == [401] * 10 + [429] * 2
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        assert "Too many failed sign-ins" in answers[-1].text
        assert (await login(client, ADMIN_TOKEN)).status_code == 303
        text = (await client.get("/metrics")).text
        assert (metric(text, "console", "refused"), metric(text, "console", "throttled")) == (10, 2)

    async def test_an_empty_form_is_not_counted(self, client: httpx.AsyncClient) -> None:
        """Submitting the form without a token is a slip, not a guess."""
        answers = [await login(client, "") for _ in range(12)]
        assert {a.status_code for a in answers} == {401}

    async def test_one_throttle_for_api_and_console(self, client: httpx.AsyncClient) -> None:
        """Failures on either surface count together: five of each, then the console says 429."""
        for _ in range(5):
            await client.get("/admin/events", headers=WRONG)
            await login(client, "wrong-token-0123456789")
        assert (await login(client, "wrong-token-0123456789")).status_code == 429
