"""The web console through the app: sign-in, cookies, CSRF, scopes, pages and retries, on both
databases."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from service.http.console.session import COOKIE
from tests.helpers import ADMIN_TOKEN, make_settings, post_webhook, running_app, w3_body

READ_TOKEN = "read-only-console-token"
EVIL = "<script>alert(1)</script>"
CONSOLE = "/admin/console"


@pytest.fixture
async def client(engine: AsyncEngine, db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(db_url, admin_tokens=[ADMIN_TOKEN, f"viewer:read:{READ_TOKEN}"])
    async with running_app(settings, engine) as client:
        yield client


def hidden(page: str, name: str) -> str:
    """The value of the first hidden input called `name`."""
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, f"no {name} field"
    return found.group(1)


async def login(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> httpx.Response:
    form = await client.get(f"{CONSOLE}/login")
    nonce = hidden(form.text, "login_csrf")
    return await client.post(f"{CONSOLE}/login", data={"token": token, "login_csrf": nonce})


async def csrf(client: httpx.AsyncClient) -> str:
    return hidden((await client.get(f"{CONSOLE}/events")).text, "csrf")


async def stored_event(client: httpx.AsyncClient, job_id: str = "job-c1", **data: str) -> str:
    response = await post_webhook(client, w3_body(job_id=job_id, **data))
    event_id: str = response.json()["eventId"]
    return event_id


async def make_dead(engine: AsyncEngine) -> list[str]:
    """Every delivery made dead (the worker is off in these tests); their ids."""
    async with engine.begin() as connection:
        await connection.execute(sa.text("UPDATE deliveries SET status = 'dead', attempts = 1"))
        rows = await connection.execute(sa.text("SELECT id FROM deliveries ORDER BY id"))
        return [row[0] for row in rows]


async def statuses(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.text("SELECT status FROM deliveries ORDER BY id"))
        return [row[0] for row in rows]


class TestSignIn:
    async def test_pages_need_a_session(self, client: httpx.AsyncClient) -> None:
        """Without a session a page sends you to sign in, and `/admin/` leads to the console."""
        for path in ("/admin/", f"{CONSOLE}/events", f"{CONSOLE}/jobs/x"):
            response = await client.get(path, follow_redirects=True)
            assert response.url.path == f"{CONSOLE}/login"
            assert "Sign in" in response.text

    async def test_login_sets_a_hardened_cookie(self, client: httpx.AsyncClient) -> None:
        """HttpOnly, SameSite=Strict, scoped to /admin/, no token inside; not Secure on http."""
        response = await login(client)
        assert response.status_code == 303
        assert response.headers["location"] == f"{CONSOLE}/overview"
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(COOKIE))
        flags = cookie.lower()
        assert "httponly" in flags
        assert "samesite=strict" in flags
        assert "path=/admin/" in flags
        assert "secure" not in flags
        assert ADMIN_TOKEN not in cookie
        assert (await client.get(f"{CONSOLE}/events")).status_code == 200

    async def test_cookie_is_secure_over_https(self, engine: AsyncEngine, db_url: str) -> None:
        """A request that arrived over https gets a Secure cookie."""
        async with running_app(make_settings(db_url), engine) as plain:
            transport = plain._transport
            async with httpx.AsyncClient(transport=transport, base_url="https://receiver") as tls:
                response = await login(tls)
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(COOKIE))
        assert "secure" in cookie.lower()

    async def test_secure_when_public_url_is_https(self, engine: AsyncEngine, db_url: str) -> None:
        """Behind a TLS proxy that is not trusted for X-Forwarded-Proto, PUBLIC_URL decides."""
        settings = make_settings(db_url, public_url="https://receiver.example.com")
        async with running_app(settings, engine) as client:
            response = await login(client)
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(COOKIE))
        assert "secure" in cookie.lower()

    async def test_signed_in_skips_the_form(self, client: httpx.AsyncClient) -> None:
        """The sign-in page sends a signed-in user on to the overview."""
        await login(client)
        response = await client.get(f"{CONSOLE}/login")
        assert response.headers["location"] == f"{CONSOLE}/overview"

    async def test_wrong_token(self, client: httpx.AsyncClient) -> None:
        """A wrong token gets the form again with 401 and no session."""
        response = await login(client, "not-a-token")
        assert response.status_code == 401
        assert "That token is not valid." in response.text
        assert COOKIE not in client.cookies

    async def test_login_without_form_nonce(self, client: httpx.AsyncClient) -> None:
        """A sign-in posted from elsewhere (no nonce matching the cookie) is 403."""
        response = await client.post(f"{CONSOLE}/login", data={"token": ADMIN_TOKEN})
        assert response.status_code == 403
        assert COOKIE not in client.cookies

    async def test_logout(self, client: httpx.AsyncClient) -> None:
        """Logging out clears the cookie; pages ask to sign in again."""
        await login(client)
        response = await client.post(f"{CONSOLE}/logout", data={"csrf": await csrf(client)})
        assert response.status_code == 303
        assert COOKIE not in client.cookies
        again = await client.get(f"{CONSOLE}/events")
        assert again.headers["location"] == f"{CONSOLE}/login"

    async def test_logout_needs_csrf(self, client: httpx.AsyncClient) -> None:
        """Another site cannot sign you out."""
        await login(client)
        response = await client.post(f"{CONSOLE}/logout", data={"csrf": "forged"})
        assert response.status_code == 403
        assert (await client.get(f"{CONSOLE}/events")).status_code == 200

    async def test_forged_cookie(self, client: httpx.AsyncClient) -> None:
        """A cookie we did not sign is no session."""
        client.cookies.set(COOKIE, "WyJ0b2tlbi0xIiw5OTk5OTk5OTk5LCJ4Il0.AAAA", path="/admin/")
        response = await client.get(f"{CONSOLE}/events")
        assert response.headers["location"] == f"{CONSOLE}/login"


class TestCsrfAndScope:
    @pytest.mark.parametrize(
        "form", [pytest.param({}, id="missing"), pytest.param({"csrf": "wrong"}, id="wrong")]
    )
    async def test_post_without_csrf_is_403(
        self, client: httpx.AsyncClient, engine: AsyncEngine, form: dict[str, str]
    ) -> None:
        """Retry, bulk retry and test event refuse a form without the session's token."""
        await stored_event(client)
        [delivery] = await make_dead(engine)
        await login(client)
        for action in (f"deliveries/{delivery}/retry", "deliveries/retry", "test-event"):
            response = await client.post(f"{CONSOLE}/{action}", data=form)
            assert response.status_code == 403
            assert "expired" in response.text
        assert await statuses(engine) == ["dead"]

    async def test_post_without_session_is_403(
        self, client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        """A POST with no session is refused, not redirected."""
        response = await client.post(f"{CONSOLE}/deliveries/retry", data={"csrf": "x"})
        assert response.status_code == 403

    async def test_read_token_can_look_but_not_act(
        self, client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        """A read-scoped session sees pages without action buttons, and its POSTs are 403."""
        event_id = await stored_event(client)
        [delivery] = await make_dead(engine)
        await login(client, READ_TOKEN)
        page = await client.get(f"{CONSOLE}/deliveries")
        assert "viewer (read)" in page.text
        assert "/retry" not in page.text
        assert "test-event" not in page.text
        token = hidden(page.text, "csrf")
        for action in (f"deliveries/{delivery}/retry", "deliveries/retry", "test-event"):
            response = await client.post(f"{CONSOLE}/{action}", data={"csrf": token})
            assert response.status_code == 403
            assert "may only read" in response.text
        assert await statuses(engine) == ["dead"]
        assert (await client.get(f"{CONSOLE}/events/{event_id}")).status_code == 200


class TestPages:
    async def test_security_headers(self, client: httpx.AsyncClient) -> None:
        """Every console answer forbids framing, caching, referrers and inline scripts."""
        for response in (await client.get(f"{CONSOLE}/login"), await login(client)):
            headers = response.headers
            assert headers["x-frame-options"] == "DENY"
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["cache-control"] == "no-store"
            assert headers["content-security-policy"].startswith("default-src 'self'")
            assert "unsafe-inline" not in headers["content-security-policy"]

    async def test_malicious_payload_shows_as_text(self, client: httpx.AsyncClient) -> None:
        """`<script>` in an event's job id and data is escaped on every page showing it."""
        event_id = await stored_event(client, job_id="<script>/alert(1)", note=EVIL)
        await login(client)
        job = quote("<script>/alert(1)", safe="")
        for path in ("events", f"events/{event_id}", "jobs", f"jobs/{job}"):
            response = await client.get(f"{CONSOLE}/{path}")
            page = response.text
            assert response.status_code == 200, path
            assert page.count("<script") == page.count("<script src="), path
            assert "&lt;script&gt;" in page, path

    async def test_bidi_job_id_shows_escaped(self, client: httpx.AsyncClient) -> None:
        """A job id holding a right-to-left override is shown with it escaped on every page that
        shows the id, so it cannot pass for another word."""
        job = "job-\u202egnp.exe"
        event_id = await stored_event(client, job_id=job)
        await login(client)
        for page in ("events", f"events/{event_id}"):
            text = (await client.get(f"{CONSOLE}/{page}")).text
            assert "\u202e" not in text, page
            assert ">job-\\u202egnp.exe<" in text, page

    async def test_job_id_with_slash_opens(self, client: httpx.AsyncClient) -> None:
        """A job id holding "/" is linked from its event's page, and the link opens the job."""
        event_id = await stored_event(client, job_id="ft/org/run 1")
        await login(client)
        event_page = (await client.get(f"{CONSOLE}/events/{event_id}")).text
        found = re.search(r'<a href="(/admin/console/jobs/[^"]+)">ft/org/run 1</a>', event_page)
        assert found is not None
        assert found.group(1) == f"{CONSOLE}/jobs/ft%2Forg%2Frun%201"
        job = await client.get(found.group(1))
        assert job.status_code == 200
        assert f'href="/admin/console/events/{event_id}"' in job.text

    async def test_event_detail(self, client: httpx.AsyncClient) -> None:
        """Payload pretty-printed, signature redacted, deliveries with their attempts."""
        event_id = await stored_event(client)
        await login(client)
        page = (await client.get(f"{CONSOLE}/events/{event_id}")).text
        assert "  &#34;event&#34;: &#34;training.completed&#34;" in page
        assert "[redacted]" in page
        assert re.search(r"x-webhook-signature</td><td>\[redacted\]", page)
        assert "Attempts of log" in page
        assert "No attempt yet." in page

    async def test_filters_and_next_page(self, client: httpx.AsyncClient) -> None:
        """Blank filter fields mean "any"; the next-page link keeps the filters."""
        for index in range(3):
            await stored_event(client, job_id=f"job-p{index}")
        await login(client)
        first = await client.get(
            f"{CONSOLE}/events?type=training.completed&jobId=&test=&duplicate=false&limit=2"
        )
        assert first.status_code == 200
        assert first.text.count('href="/admin/console/events/evt_') == 2
        more = re.search(r'href="([^"]*cursor=[^"]*)"', first.text)
        assert more is not None
        second = await client.get(more.group(1).replace("&amp;", "&"))
        assert second.text.count('href="/admin/console/events/evt_') == 1
        assert "Next page" not in second.text

    async def test_bad_filter_is_a_page(self, client: httpx.AsyncClient) -> None:
        """A malformed filter is a 400 page naming the problem, and a missing event a 404."""
        await login(client)
        bad = await client.get(f"{CONSOLE}/events?since=yesterday")
        assert bad.status_code == 400
        assert "since" in bad.text
        missing = await client.get(f"{CONSOLE}/events/evt_0000000000000000000000000")
        assert missing.status_code == 404

    async def test_jobs_and_timeline(self, client: httpx.AsyncClient) -> None:
        """The jobs list links to a job whose timeline shows its event and delivery."""
        event_id = await stored_event(client, job_id="job-t1")
        await login(client)
        listing = (await client.get(f"{CONSOLE}/jobs")).text
        job = re.search(r'href="(/admin/console/jobs/[^"]+)"', listing)
        assert job is not None
        page = (await client.get(job.group(1))).text
        assert "Timeline" in page
        assert f'href="/admin/console/events/{event_id}"' in page
        assert "log</a>: " in page


class TestActions:
    async def test_retry_one(self, client: httpx.AsyncClient, engine: AsyncEngine) -> None:
        """The retry button makes a dead delivery pending and comes back with a notice."""
        event_id = await stored_event(client)
        [delivery] = await make_dead(engine)
        await login(client)
        page = (await client.get(f"{CONSOLE}/events/{event_id}")).text
        form = {"csrf": hidden(page, "csrf"), "next": f"{CONSOLE}/events/{event_id}"}
        with capture_logs() as lines:
            response = await client.post(f"{CONSOLE}/deliveries/{delivery}/retry", data=form)
        assert response.status_code == 303
        [audit] = [line for line in lines if line["event"] == "admin_action"]
        assert (audit["action"], audit["token"], audit["delivery_id"]) == (
            "console_retry_delivery",
            "token-1",
            delivery,
        )
        assert response.headers["location"] == f"{CONSOLE}/events/{event_id}?done=retried"
        assert await statuses(engine) == ["pending"]
        shown = (await client.get(response.headers["location"])).text
        assert "Queued for retry." in shown

    async def test_bulk_retry(self, client: httpx.AsyncClient, engine: AsyncEngine) -> None:
        """ "Retry all dead" queues every dead delivery of the route filter."""
        await stored_event(client, job_id="job-b1")
        await stored_event(client, job_id="job-b2")
        await make_dead(engine)
        await login(client)
        token = await csrf(client)
        response = await client.post(
            f"{CONSOLE}/deliveries/retry?route=log",
            data={"csrf": token, "next": "https://x.example"},
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"{CONSOLE}/events?done=retried"
        assert await statuses(engine) == ["pending", "pending"]

    async def test_retry_of_unknown_delivery(self, client: httpx.AsyncClient) -> None:
        """A delivery that does not exist is a 404 page."""
        await login(client)
        token = await csrf(client)
        response = await client.post(
            f"{CONSOLE}/deliveries/dlv_0000000000000000000000000/retry", data={"csrf": token}
        )
        assert response.status_code == 404

    async def test_send_test_event(self, client: httpx.AsyncClient) -> None:
        """The test-event button stores a test event and shows it."""
        await login(client)
        token = await csrf(client)
        response = await client.post(
            f"{CONSOLE}/test-event", data={"csrf": token}, follow_redirects=True
        )
        assert response.status_code == 200
        assert "Test event stored and routed." in response.text
        assert re.search(r"<td>Test</td><td>yes</td>", response.text)

    async def test_oversized_form_is_refused(self, client: httpx.AsyncClient) -> None:
        """A form body over 16 KiB is not parsed (so it carries no CSRF token)."""
        await login(client)
        token = await csrf(client)
        data = {"csrf": token, "pad": "x" * 20_000}
        response = await client.post(f"{CONSOLE}/test-event", data=data)
        assert response.status_code == 403
