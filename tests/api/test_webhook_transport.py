"""How the webhook endpoint reads bodies: size cap before reading, deadline, disconnects, paths.

These speak ASGI to the app directly, so each test controls exactly when body bytes arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message

from tests.helpers import (
    AUTH,
    make_settings,
    post_webhook,
    running_app,
    started_app,
    w3_body,
    w3_headers,
)

Receive = Callable[[], Awaitable[Message]]


async def call(
    app: ASGIApp, path: str, headers: list[tuple[bytes, bytes]], receive: Receive
) -> list[Message]:
    """POST through the ASGI interface; the messages the app sent back."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("receiver", 80),
    }
    await app(scope, receive, send)
    return sent


def answer(sent: list[Message]) -> tuple[int, dict[str, Any]]:
    """Status and parsed JSON body of an ASGI answer."""
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], orjson.loads(body)


async def metric(app: ASGIApp, name: str, labels: dict[str, str]) -> float:
    """One sample of `/metrics`, read through prometheus-client's own parser."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: how the endpoint reads a request is the same whatever stores it
    (tests/integration runs the storage underneath on both databases)."""
    return sqlite_url


@pytest.fixture
async def app(engine: AsyncEngine, db_url: str) -> AsyncIterator[ASGIApp]:
    settings = make_settings(db_url, max_body_bytes=2048, body_timeout_seconds=0.3)
    async with started_app(settings, engine) as started:
        yield started


class TestBodyReading:
    async def test_declared_length_over_the_cap_is_refused_unread(self, app: ASGIApp) -> None:
        """A Content-Length over the cap gets 413 before a single body message is received."""
        reads = 0

        async def receive() -> Message:
            nonlocal reads
            reads += 1
            return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

        headers = [(b"content-length", b"999999")]
        status, body = answer(await call(app, "/webhooks/llmtune", headers, receive))
        assert (status, body["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
        assert reads == 0
        too_large = {"event_type": "unparsed", "outcome": "too_large"}
        assert await metric(app, "llmtune_webhooks_received_total", too_large) == 1.0

    async def test_stalled_body_gets_408_at_the_deadline(self, app: ASGIApp) -> None:
        """A sender that stops mid-body is answered 408 in LLMTune's shape, not held forever."""
        stalled = asyncio.Event()

        async def receive() -> Message:
            if not stalled.is_set():
                stalled.set()
                return {"type": "http.request", "body": b'{"event":', "more_body": True}
            await asyncio.Event().wait()  # never comes
            raise AssertionError("unreachable")

        status, body = answer(await call(app, "/webhooks/llmtune", [], receive))
        assert (status, body["error"]["code"]) == (408, "REQUEST_TIMEOUT")
        assert body["error"]["details"] == {"receivedBytes": 9}
        timeouts = {"event_type": "unparsed", "outcome": "body_timeout"}
        assert await metric(app, "llmtune_webhooks_received_total", timeouts) == 1.0

    async def test_disconnect_mid_body_is_its_own_outcome(self, app: ASGIApp) -> None:
        """A sender that hangs up mid-body counts as `client_disconnected`, not `invalid_body`,
        and its upload time stays out of the ingest latency histogram."""
        messages: Iterator[Message] = iter(
            [
                {"type": "http.request", "body": b'{"event":', "more_body": True},
                {"type": "http.disconnect"},
            ]
        )

        async def receive() -> Message:
            return next(messages)

        await call(app, "/webhooks/llmtune", [], receive)
        gone = {"event_type": "unparsed", "outcome": "client_disconnected"}
        assert await metric(app, "llmtune_webhooks_received_total", gone) == 1.0
        invalid = {"event_type": "unparsed", "outcome": "invalid_body"}
        assert await metric(app, "llmtune_webhooks_received_total", invalid) == 0.0
        assert await metric(app, "llmtune_webhook_ingest_seconds_count", {}) == 0.0
        assert await metric(app, "llmtune_webhook_body_read_seconds_count", {}) == 1.0


class TestPaths:
    async def test_trailing_slash_is_the_same_endpoint(
        self, engine: AsyncEngine, db_url: str
    ) -> None:
        """`/webhooks/llmtune/` stores the delivery too: no redirect a sender would not follow."""
        async with running_app(make_settings(db_url), engine) as client:
            body = w3_body(job_id="slash")
            response = await client.post(
                "/webhooks/llmtune/", content=body, headers=w3_headers(body)
            )
            assert response.status_code == 200, response.text
            assert response.json()["duplicate"] is False

    @pytest.mark.parametrize(
        ("method", "path"),
        [("GET", "/admin/events/"), ("GET", "/healthz/"), ("POST", "/webhooks/llmtune//")],
    )
    async def test_no_route_answers_with_a_redirect(
        self, engine: AsyncEngine, db_url: str, method: str, path: str
    ) -> None:
        """Near-miss paths get a JSON error, never an empty 307."""
        async with running_app(make_settings(db_url), engine) as client:
            response = await client.request(method, path, headers=AUTH)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_duplicates_by_trailing_slash_are_still_duplicates(
    engine: AsyncEngine, db_url: str
) -> None:
    """The two spellings of the path share one event store: a resend is a duplicate."""
    async with running_app(make_settings(db_url), engine) as client:
        body = w3_body(job_id="slash-dup")
        first = await post_webhook(client, body)
        again = await client.post("/webhooks/llmtune/", content=body, headers=w3_headers(body))
    assert again.json() == {**first.json(), "duplicate": True}
