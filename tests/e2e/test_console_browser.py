"""The console in a real browser against a real `serve` process: sign in, look over the
overview, an event, a dead delivery's page, the rejections log and a job's loss chart, filter
jobs by status, retry the dead delivery and watch it succeed, with JavaScript switched off
(plain forms and links); then, with JavaScript on, times shown in the viewer's zone.

Headless Chromium is Debian's (`.ci/install-browser`), driven by Playwright. Under CI a missing
browser fails the test; elsewhere it skips. A full-page screenshot is saved in the test's
directory and, when CONSOLE_SCREENSHOT names a path, there too (that is how docs/console.png is
made: `CONSOLE_SCREENSHOT=docs/console.png pytest tests/e2e/test_console_browser.py`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.e2e.server import receiver_env, running_server
from tests.helpers import ADMIN_TOKEN, AUTH, emptied_engine, w3_body, w3_headers
from tests.sinks import HttpSink, Reply, http_sink
from tests.waiting import until

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
FORWARD_SECRET = "whsec_" + base64.b64encode(b"console-forward-secret-32-bytes!").decode()
JOB = "job-console-demo"
WRONG_SECRET = "whsec_" + base64.b64encode(b"a-secret-pasted-from-elsewhere!!").decode()


def routes_toml(sink: HttpSink) -> str:
    return f"""
[[routes]]
name = "forward"
events = ["training.*", "model.deployed"]
handler = "http"
max_attempts = 1
options = {{ url = "{sink.url}/hook", secret = "{FORWARD_SECRET}", allow_private = true }}
"""


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium; a failure under CI when it is missing, a skip elsewhere."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing; run .ci/install-browser"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (required under CI)", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), headless=True)
        yield launched
        await launched.close()


async def until_delivery(client: httpx.AsyncClient, status: str, within: float = 20.0) -> str:
    """Poll the admin API until a delivery has `status`; its id."""
    found: list[str] = []

    async def listed() -> bool:
        answer = await client.get("/admin/deliveries", params={"status": status}, headers=AUTH)
        found.extend(item["id"] for item in answer.json()["items"])
        return bool(found)

    await until(listed, within, f"a delivery is {status}")
    return found[0]


async def reload_until(page: Page, text: str, within: float = 20.0) -> None:
    """Reload until `text` is on the page (no JavaScript: the page does not update itself)."""
    async with asyncio.timeout(within):
        while text not in await page.content():
            await asyncio.sleep(0.2)
            await page.reload()


async def send_events(client: httpx.AsyncClient) -> str:
    """A job's life (training metrics on the way) and one delivery signed with a wrong secret;
    the first event's id."""
    body = w3_body("training.started", JOB)
    sent = await client.post("/webhooks/llmtune", content=body, headers=w3_headers(body))
    event_id: str = sent.json()["eventId"]
    await until_delivery(client, "dead")
    for name, data in (
        ("training.progress", {"metrics": {"loss": 1.84, "step": 100}}),
        ("training.progress", {"metrics": {"loss": 1.37, "step": 200}}),
        ("training.completed", {"metrics": {"loss": 1.12, "step": 300}}),
        ("model.deployed", {"deploymentId": "dep-7"}),
    ):
        body = w3_body(name, JOB, **data)
        await client.post("/webhooks/llmtune", content=body, headers=w3_headers(body))
    body = w3_body("training.completed", "job-wrong-secret")
    wrong = w3_headers(body, secret=WRONG_SECRET)
    assert (await client.post("/webhooks/llmtune", content=body, headers=wrong)).status_code == 401
    return event_id


async def sign_in(page: Page, base_url: str) -> None:
    await page.goto(f"{base_url}/admin/")
    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()


async def test_retry_a_dead_delivery_in_the_browser(
    browser: Browser, sqlite_url: str, tmp_path: Path
) -> None:
    """Sign in, look over the overview, the event, the dead delivery's page, the rejections and
    a job's loss chart; retry the dead delivery and see it succeed. JavaScript off throughout."""
    await (await emptied_engine(sqlite_url)).dispose()
    async with http_sink() as sink:
        sink.script = [Reply(status=400, body="refused once by the test")]
        (tmp_path / "routes.toml").write_text(routes_toml(sink))
        env = receiver_env(sqlite_url) | {
            "ROUTES_FILE": str(tmp_path / "routes.toml"),
            "WORKER_POLL_SECONDS": "0.05",
            "ADMIN_TOKENS": f"ops:write:{ADMIN_TOKEN}",
        }
        with running_server(tmp_path, env) as server:
            base = server.base_url
            async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
                event_id = await send_events(client)
                dead = await until_delivery(client, "dead")
            context = await browser.new_context(
                java_script_enabled=False, viewport={"width": 1280, "height": 800}
            )
            page = await context.new_page()
            await sign_in(page, base)
            await expect(page.locator("svg[role=img]")).to_have_count(2)

            await page.get_by_role("link", name="Events", exact=True).click()
            await expect(page.get_by_role("heading", name="Events")).to_be_visible()
            await expect(page.locator(".chip.c-dead")).to_have_text("1 dead")
            await page.locator(f"a[href$='/events/{event_id}']").first.click()
            await expect(page.get_by_role("heading", name="training.started")).to_be_visible()
            await expect(page.get_by_text("[redacted]")).to_be_visible()

            await page.locator(f"a[href$='/deliveries/{dead}']").first.click()
            await expect(page.get_by_role("heading", name="Delivery to forward")).to_be_visible()
            await expect(page.get_by_text("failed for good: dead")).to_be_visible()
            preview = page.get_by_role("cell", name="HTTP 400: refused once by the test")
            await expect(preview.last).to_be_visible()

            await page.get_by_role("link", name="Rejections", exact=True).click()
            await reload_until(page, "(signature_mismatch)")
            await expect(page.get_by_text("wrong secret?").first).to_be_visible()

            await page.get_by_role("link", name="Jobs", exact=True).click()
            await page.get_by_label("Status").select_option("deployed")
            await page.get_by_role("button", name="Filter").click()
            await expect(page.get_by_text(JOB)).to_be_visible()
            await page.locator("tbody a.id").first.click()
            chart = page.get_by_role("img", name="Loss over the job's events")
            await expect(chart).to_be_visible()
            await expect(chart.locator("circle")).to_have_count(3)

            await page.get_by_role("link", name="Deliveries", exact=True).click()
            row = page.locator("tr", has=page.locator(f"form[action$='/{dead}/retry']"))
            await expect(row).to_contain_text("dead")
            await row.get_by_role("button", name="Retry").click()
            await expect(page.get_by_text("Queued for retry.")).to_be_visible()

            await page.goto(f"{base}/admin/console/events/{event_id}")
            await reload_until(page, '<span class="s-succeeded">succeeded</span>')
            await expect(page.get_by_text("refused once by the test").first).to_be_visible()
            shot = tmp_path / "console.png"
            await page.screenshot(path=str(shot), full_page=True)
            await context.close()
            await local_times_with_script(browser, base)
    assert len(sink.received) == 6  # the refusal, its retry, and the four later events
    if target := os.environ.get("CONSOLE_SCREENSHOT"):
        shutil.copyfile(shot, target)


async def local_times_with_script(browser: Browser, base_url: str) -> None:
    """With JavaScript on, the console's one script runs under the CSP and shows times in the
    viewer's zone (Tokyo here), the full UTC time still on hover."""
    context = await browser.new_context(java_script_enabled=True, timezone_id="Asia/Tokyo")
    page = await context.new_page()
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))
    await sign_in(page, base_url)
    await page.get_by_role("link", name="Events", exact=True).click()
    first = page.locator("td time").first
    await expect(first).not_to_contain_text("UTC")
    await expect(first).to_have_text(re.compile(r"^\w{3} \d\d \d\d:\d\d:\d\d (GMT\+9|JST)$"))
    assert (await first.get_attribute("title") or "").endswith("Z")
    assert not [text for text in refused if "Content Security Policy" in text]
    await context.close()
