"""Bounds on what a request may carry before the service converts or stores it: numbers in
queries and headers (at most 18 digits, 400 never 500) and header size (431 HEADERS_TOO_LARGE,
nothing stored, a webhook's recorded in the rejections log). Both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.store.tables import EventRow
from tests.api.test_job_callbacks import callback, submitted_job
from tests.api.test_rejections import listed
from tests.helpers import AUTH, make_settings, post_webhook, running_app, w3_body, w3_headers

HUGE_NUMBER = "1" * 5000  # over Python's 4300-digit int() limit
# 256 KiB in 64 headers of 4 KiB: four times the default MAX_HEADER_BYTES.
PADDING = {f"X-Padding-{index}": "p" * 4096 for index in range(64)}


@pytest.fixture
async def client(engine: AsyncEngine, db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with engine.begin() as connection:
        await connection.execute(sa.text("DELETE FROM webhook_rejections"))
    async with running_app(make_settings(db_url), engine) as client:
        yield client


async def stored_count(engine: AsyncEngine) -> int:
    """How many events are stored."""
    async with engine.connect() as connection:
        count: int = (await connection.execute(sa.select(sa.func.count(EventRow.id)))).scalar_one()
    return count


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """`response` is `status` in our error shape with `code`; its details."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], set(error)) == (code, {"message", "code", "details"})
    details: dict[str, Any] = error["details"]
    return details


@pytest.mark.parametrize("path", ["/admin/events", "/admin/deliveries", "/admin/rejections"])
async def test_huge_limit_is_400(client: httpx.AsyncClient, path: str) -> None:
    """A `limit` of 5000 digits is a 400 naming it, not a 500 from int()."""
    response = await client.get(f"{path}?limit={HUGE_NUMBER}", headers=AUTH)
    assert assert_error(response, 400, "INVALID_PARAMETER") == {"parameter": "limit"}


async def test_huge_content_length_is_not_a_500(client: httpx.AsyncClient) -> None:
    """A Content-Length of 5000 digits is not converted: the body is read under its cap."""
    body = w3_body()
    headers = w3_headers(body) | {"Content-Length": HUGE_NUMBER}
    response = await post_webhook(client, body, headers)
    assert response.status_code == 200, response.text


async def test_oversized_headers_on_a_signed_webhook_are_431(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """256 KiB of headers on a validly signed delivery: 431, nothing stored, one rejection."""
    body = w3_body()
    response = await post_webhook(client, body, w3_headers(body) | PADDING)
    assert assert_error(response, 431, "HEADERS_TOO_LARGE") == {"limit": 65536}
    [item] = await listed(client, 1)
    assert (item["reason"], item["status"], item["path"]) == (
        "headers_too_large",
        431,
        "/webhooks/llmtune",
    )
    assert item["bodyBytes"] == len(body)
    assert await stored_count(engine) == 0


async def test_oversized_headers_on_a_job_callback_are_431(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """A job's callback URL refuses them too, recorded under the template, not the token."""
    row = await submitted_job(engine)
    assert row.callback_token is not None
    body = w3_body(job_id="ft-42")
    response = await client.post(callback(row), content=body, headers=w3_headers(body) | PADDING)
    assert_error(response, 431, "HEADERS_TOO_LARGE")
    [item] = await listed(client, 1)
    assert (item["reason"], item["path"]) == ("headers_too_large", "/webhooks/llmtune/jobs/{token}")
    assert await stored_count(engine) == 0


async def test_oversized_headers_on_the_admin_api_are_431(client: httpx.AsyncClient) -> None:
    """Every route is covered, not only the webhook ones."""
    response = await client.get("/admin/events", headers=AUTH | PADDING)
    assert_error(response, 431, "HEADERS_TOO_LARGE")


async def test_headers_at_the_limit_pass(engine: AsyncEngine, db_url: str) -> None:
    """Headers adding up to exactly MAX_HEADER_BYTES are accepted; one byte more is not."""
    settings = make_settings(db_url, max_header_bytes=8192)
    body = w3_body()
    async with running_app(settings, engine) as client:
        request = client.build_request("POST", "/webhooks/llmtune", content=body)
        request.headers.update(w3_headers(body))
        used = sum(len(name) + len(value) for name, value in request.headers.raw)
        # The ASGI transport adds no headers of its own; "x-pad" + value fill up to the limit.
        request.headers["X-Pad"] = "p" * (8192 - used - len("x-pad"))
        assert (await client.send(request)).status_code == 200
        request.headers["X-Pad"] += "p"
        assert_error(await client.send(request), 431, "HEADERS_TOO_LARGE")
