"""The console's debugging pages through the app, on both databases: the overview's pictures,
delivery chips and readable columns on the events list, a delivery's own page (and an HTML 404
for an unknown one), the rejections log, the jobs status drop-down and a job's loss chart."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.test_console import CONSOLE, login, make_dead, stored_event
from tests.helpers import ADMIN_TOKEN, make_settings, post_webhook, running_app, w3_body, w3_headers
from tests.waiting import until

STARTED = datetime(2025, 11, 8, 14, 0, 5, tzinfo=UTC)


@pytest.fixture
async def client(engine: AsyncEngine, db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(db_url, admin_tokens=[ADMIN_TOKEN]), engine) as client:
        await login(client)
        yield client


async def delivery_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.text("SELECT id FROM deliveries ORDER BY id"))
        return [row[0] for row in rows]


async def add_attempt(
    engine: AsyncEngine, delivery_id: str, number: int, outcome: str, detail: str
) -> None:
    """An attempt row as the worker records it."""
    async with engine.begin() as connection:
        await connection.execute(
            sa.text(
                "INSERT INTO delivery_attempts (delivery_id, number, started_at, duration_ms,"
                " outcome, detail) VALUES (:d, :n, :t, 12.5, :o, :x)"
            ),
            {"d": delivery_id, "n": number, "t": STARTED, "o": outcome, "x": detail},
        )


class TestOverview:
    async def test_admin_leads_to_the_overview(self, client: httpx.AsyncClient) -> None:
        """`/admin/` and the console's root open the overview."""
        for start in ("/admin/", CONSOLE):
            response = await client.get(start, follow_redirects=True)
            assert response.url.path == f"{CONSOLE}/overview"

    async def test_events_per_hour_and_deliveries_by_status(
        self, client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        """Both pictures are inline SVG; the counts link to the deliveries of each status."""
        await stored_event(client, job_id="job-o1")
        await stored_event(client, job_id="job-o2")
        await make_dead(engine)
        page = (await client.get(f"{CONSOLE}/overview")).text
        assert page.count("<svg") == 2
        assert "<p>2 events." in page
        assert page.count("<rect") == 24 + 5
        dead = f'<a href="{CONSOLE}/deliveries?status=dead">dead</a></td><td>2</td>'
        assert dead in page


class TestEventsList:
    async def test_readable_columns_and_chips(
        self, client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        """Headers for people, yes/no, times as <time> with the full time on hover, ids first
        and shortened, and each event's deliveries counted by status."""
        event_id = await stored_event(client)
        page = (await client.get(f"{CONSOLE}/events")).text
        headers = re.findall(r"<th>([^<]*)</th>", page)
        assert headers[:3] == ["ID", "Received", "Type"]
        assert "receivedAt" not in headers
        assert "isTest" not in headers
        assert f'title="{event_id}">evt_…{event_id[-8:]}</a>' in page
        assert re.search(r'<time datetime="[0-9T:.-]+Z" title="[0-9T:.-]+Z">\w{3} \d\d ', page)
        assert "<td>no</td>" in page
        assert "True" not in page
        assert "False" not in page
        assert '<span class="chip c-pending">1 pending</span>' in page
        await make_dead(engine)
        page = (await client.get(f"{CONSOLE}/events")).text
        assert '<span class="chip c-dead">1 dead</span>' in page


class TestDeliveryPage:
    async def test_attempts_headers_and_no_next_attempt_when_dead(
        self, client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        """Every attempt with its result, HTTP status, duration and preview; the request's
        signature redacted; a dead delivery's last attempt reads as final, with no next attempt."""
        event_id = await stored_event(client)
        [delivery] = await make_dead(engine)
        await add_attempt(engine, delivery, 1, "dead", "HTTP 503: upstream <down>")
        response = await client.get(f"{CONSOLE}/deliveries/{delivery}")
        page = response.text
        assert response.status_code == 200
        assert "<h1>Delivery to log</h1>" in page
        assert re.search(r"x-webhook-signature</td><td>\[redacted\]", page)
        assert "failed, no attempt left: dead" in page
        assert "<td>503</td><td>12.5 ms</td><td>HTTP 503: upstream &lt;down&gt;</td>" in page
        assert "<td>Next attempt</td><td></td>" in page
        assert "<td>Attempts</td><td>1</td>" in page
        assert "retry scheduled" not in page
        assert f'href="{CONSOLE}/events/{event_id}"' in page
        listing = (await client.get(f"{CONSOLE}/events/{event_id}")).text
        assert f'href="{CONSOLE}/deliveries/{delivery}"' in listing

    async def test_unknown_delivery_is_an_html_404(self, client: httpx.AsyncClient) -> None:
        """A delivery that does not exist is a 404 page, not the API's JSON."""
        response = await client.get(f"{CONSOLE}/deliveries/dlv_0000000000000000000000000")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "no delivery" in response.text
        other = await client.get(f"{CONSOLE}/no/such/page")
        assert other.status_code == 404
        assert other.headers["content-type"].startswith("text/html")

    async def test_needs_a_session(self, client: httpx.AsyncClient) -> None:
        """Signed out, the delivery page and an unknown page lead to the sign-in form."""
        client.cookies.clear()
        for path in ("deliveries/dlv_1", "nothing-here"):
            response = await client.get(f"{CONSOLE}/{path}")
            assert response.headers["location"] == f"{CONSOLE}/login"


class TestRejections:
    async def test_wrong_secret_is_listed(self, client: httpx.AsyncClient) -> None:
        """A delivery signed with another secret shows with its time, address, reason, status
        and route; the reason filter is a drop-down."""
        body = w3_body(job_id="job-wrong-secret")
        headers = w3_headers(body, secret="whsec_bm90LXRoZS1yaWdodC1zZWNyZXQtYXQtYWxsIQ==")
        assert (await post_webhook(client, body, headers)).status_code == 401
        pages: list[str] = []

        async def listed() -> bool:
            pages.append((await client.get(f"{CONSOLE}/rejections")).text)
            return "<tbody>" in pages[-1]

        await until(listed, 10.0, "the refusal is listed")
        page = pages[-1]
        row = re.search(r"<tbody><tr>(.*?)</tr>", page)
        assert row is not None
        assert "<time datetime=" in row.group(1)
        assert "<td>127.0.0.1</td>" in row.group(1)
        assert "(wrong secret?)" in row.group(1)
        assert "(signature_mismatch)" in row.group(1)
        assert "<td>401</td><td>/webhooks/llmtune</td>" in row.group(1)
        assert '<select name="reason">' in page
        filtered = await client.get(f"{CONSOLE}/rejections?reason=too_large")
        assert "No refused requests." in filtered.text
        assert '<option value="too_large" selected>' in filtered.text


class TestJobs:
    async def test_status_is_a_drop_down(self, client: httpx.AsyncClient) -> None:
        """Every job status is offered, and the chosen one stays selected."""
        page = (await client.get(f"{CONSOLE}/jobs?status=running")).text
        assert '<select name="status">' in page
        assert '<option value="running" selected>running</option>' in page
        assert '<option value="deployed">deployed</option>' in page

    async def test_loss_chart(self, client: httpx.AsyncClient) -> None:
        """The job page draws the loss its events carried, in the order received."""
        steps = (("training.started", 2.0), ("training.progress", 1.5), ("training.completed", 1))
        for name, loss in steps:
            body = w3_body(name, "job-m1", metrics={"loss": loss, "step": 1})
            assert (await post_webhook(client, body)).status_code == 200
        listing = (await client.get(f"{CONSOLE}/jobs")).text
        job = re.search(r'href="(/admin/console/jobs/[^"]+)"', listing)
        assert job is not None
        page = (await client.get(job.group(1))).text
        assert "<h2>Training metrics</h2>" in page
        assert '<path d="M6,6 L240,60 L474,114"></path>' in page
        assert "from 2 to 1, lowest 1, highest 2" in page
        assert "<td>step 1</td>" in page

    async def test_job_without_metrics(self, client: httpx.AsyncClient) -> None:
        """A job whose events carried no metrics says so, without a chart."""
        await stored_event(client, job_id="job-m2")
        listing = (await client.get(f"{CONSOLE}/jobs")).text
        job = re.search(r'href="(/admin/console/jobs/[^"]+)"', listing)
        assert job is not None
        page = (await client.get(job.group(1))).text
        assert "No event of this job carried metrics." in page
        assert "<svg" not in page


async def test_local_time_script_is_admitted(client: httpx.AsyncClient) -> None:
    """The one script is a same-origin file the CSP admits; no page holds an inline one."""
    page = await client.get(f"{CONSOLE}/events")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert re.findall(r"<script[^>]*>", page.text) == [
        f'<script src="{CONSOLE}/local-time.js" defer>'
    ]
    script = await client.get(f"{CONSOLE}/local-time.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "time[datetime]" in script.text
