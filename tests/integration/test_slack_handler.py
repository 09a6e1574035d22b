"""The Slack handler against a real local HTTP sink: incoming webhooks, the Web API with one
thread per job, and how every kind of answer (or no answer) becomes an outcome."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.clock import SystemClock
from service.handlers.base import Delivery, Fail, HandlerDeps, Ok, Outcome, Retry
from service.handlers.outbound import Outbound
from service.handlers.slack import SlackHandler
from tests.deliveries import a_delivery
from tests.sinks import HttpSink, Reply, http_sink

TOKEN = "xoxb-test-SECRETTOKEN"
HOOK_PATH = "/services/T000/B000/SECRETHOOK"


def delivery(job_id: str | None = "job-1", *, number: int = 1, **values: Any) -> Delivery:
    """Delivery `number` of an event of `job_id`; `values` override the event's fields."""
    fields = {"type": "training.started", "job_id": job_id} | values
    return a_delivery(
        id=f"dlv_{number}", event_id=f"evt_{number}", route="slack-lifecycle", **fields
    )


def api_reply(status: int = 200, headers: dict[str, str] | None = None, **body: Any) -> Reply:
    """A Web API answer with a JSON body."""
    return Reply(
        status=status,
        body=json.dumps(body),
        headers=headers or {},
        content_type="application/json",
    )


def posted(sink: HttpSink, index: int) -> dict[str, Any]:
    """The JSON body of the sink's `index`th request."""
    body: dict[str, Any] = json.loads(sink.received[index].body)
    return body


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def deps() -> AsyncIterator[HandlerDeps]:
    """Handler dependencies with a real outbound path, closed afterwards."""
    http = httpx.AsyncClient()
    outbound = Outbound()
    try:
        yield HandlerDeps(
            http=http, clock=SystemClock(), public_url="https://receiver.example", outbound=outbound
        )
    finally:
        await outbound.aclose()
        await http.aclose()


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    """A recording HTTP server on a free local port."""
    async with http_sink() as server:
        yield server


def bot(sink: HttpSink, deps: HandlerDeps) -> SlackHandler:
    """A bot-token handler whose Web API is the sink."""
    options = {"bot_token": TOKEN, "channel": "C123", "api_url": f"{sink.url}/api"}
    return SlackHandler.from_options(options, deps)


def assert_no_secret(outcome: Outcome) -> None:
    """Neither the token nor the webhook URL's secret part is in the outcome."""
    text = repr(outcome)
    assert "SECRETTOKEN" not in text
    assert "SECRETHOOK" not in text


class TestIncomingWebhook:
    async def test_posts_blocks_and_text(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """The message goes as JSON with blocks and text to the webhook URL, keyed by delivery."""
        handler = SlackHandler.from_options({"webhook_url": sink.url + HOOK_PATH}, deps)
        outcome = await handler.handle(delivery())
        assert outcome == Ok("HTTP 200")
        [request] = sink.received
        assert (request.method, request.path) == ("POST", HOOK_PATH)
        assert request.headers["x-idempotency-key"] == "dlv_1"
        assert request.headers["content-type"].startswith("application/json")
        body = posted(sink, 0)
        assert body["text"].startswith("training.started: ")
        assert body["blocks"][0]["text"]["text"].startswith(":hourglass_flowing_sand: `training")
        assert "thread_ts" not in body
        assert "channel" not in body

    @pytest.mark.parametrize(
        ("reply", "expected"),
        [
            pytest.param(Reply(500, "rollup_error"), Retry("HTTP 500: rollup_error"), id="500"),
            pytest.param(
                Reply(429, "rate_limited", headers={"Retry-After": "7"}),
                Retry("HTTP 429: rate_limited", after=7.0),
                id="429",
            ),
            pytest.param(Reply(404, "no_service"), Fail("HTTP 404: no_service"), id="404"),
            pytest.param(
                Reply(403, f"no hook at https://hooks.slack.com{HOOK_PATH}"),
                Fail("HTTP 403: no hook at [url]"),
                id="url-in-body-redacted",
            ),
        ],
    )
    async def test_answers(
        self, sink: HttpSink, deps: HandlerDeps, reply: Reply, expected: Outcome
    ) -> None:
        """Server errors and rate limits are retried (after Retry-After), other 4xx fail."""
        sink.script.append(reply)
        handler = SlackHandler.from_options({"webhook_url": sink.url + HOOK_PATH}, deps)
        outcome = await handler.handle(delivery())
        assert outcome == expected
        assert_no_secret(outcome)

    async def test_connection_refused(self, deps: HandlerDeps) -> None:
        """Nobody listening is worth a retry, named by the error class, without the URL."""
        url = f"http://127.0.0.1:{closed_port()}{HOOK_PATH}?token=SECRETHOOK"
        handler = SlackHandler.from_options({"webhook_url": url}, deps)
        outcome = await handler.handle(delivery())
        assert isinstance(outcome, Retry)
        assert outcome.error.startswith("ConnectError")
        assert outcome.after is None
        assert_no_secret(outcome)


class TestWebApi:
    async def test_request_shape(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """chat.postMessage gets the bearer token, the channel and the message."""
        sink.script.append(api_reply(ok=True, ts="1.1"))
        outcome = await bot(sink, deps).handle(delivery())
        assert outcome == Ok("ts 1.1")
        [request] = sink.received
        assert request.path == "/api/chat.postMessage"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["x-idempotency-key"] == "dlv_1"
        body = posted(sink, 0)
        assert body["channel"] == "C123"
        assert body["text"].startswith("training.started: ")
        assert body["blocks"]

    async def test_one_thread_per_job(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """A job's first event opens a thread, its later ones reply in it; jobs do not mix."""
        sink.script.extend(api_reply(ok=True, ts=ts) for ts in ("1.1", "2.2", "3.3", "4.4"))
        handler = bot(sink, deps)
        outcomes = [
            await handler.handle(delivery("job-a", number=1)),
            await handler.handle(delivery("job-a", number=2, type="training.completed")),
            await handler.handle(delivery("job-b", number=3)),
            await handler.handle(delivery("job-b", number=4, type="training.failed")),
        ]
        assert outcomes == [Ok("ts 1.1"), Ok("ts 2.2"), Ok("ts 3.3"), Ok("ts 4.4")]
        threads = [posted(sink, i).get("thread_ts") for i in range(4)]
        assert threads == [None, "1.1", None, "3.3"]

    async def test_thread_opens_only_when_posted(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """A failed first post leaves no thread: the next attempt opens it."""
        sink.script.extend(
            [
                api_reply(ok=False, error="internal_error"),
                api_reply(ok=True, ts="5.5"),
                api_reply(ok=True, ts="6.6"),
            ]
        )
        handler = bot(sink, deps)
        assert await handler.handle(delivery("job-a")) == Retry("slack: internal_error")
        assert await handler.handle(delivery("job-a")) == Ok("ts 5.5")
        assert await handler.handle(delivery("job-a", number=2)) == Ok("ts 6.6")
        threads = [posted(sink, i).get("thread_ts") for i in range(3)]
        assert threads == [None, None, "5.5"]

    async def test_events_without_job_stay_top_level(
        self, sink: HttpSink, deps: HandlerDeps
    ) -> None:
        """Events with no job id are posted at top level, never threaded."""
        sink.script.extend([api_reply(ok=True, ts="7.7"), api_reply(ok=True, ts="8.8")])
        handler = bot(sink, deps)
        await handler.handle(delivery(None, number=1, type="usage.threshold_reached"))
        await handler.handle(delivery(None, number=2, type="usage.threshold_reached"))
        assert [posted(sink, i).get("thread_ts") for i in range(2)] == [None, None]

    @pytest.mark.parametrize(
        ("reply", "expected"),
        [
            pytest.param(
                api_reply(ok=False, error="ratelimited", headers={"Retry-After": "30"}),
                Retry("slack: ratelimited", after=30.0),
                id="ratelimited",
            ),
            pytest.param(
                api_reply(429, headers={"Retry-After": "12"}, ok=False, error="ratelimited"),
                Retry('HTTP 429: {"ok": false, "error": "ratelimited"}', after=12.0),
                id="http-429",
            ),
            pytest.param(
                api_reply(ok=False, error="invalid_auth"), Fail("slack: invalid_auth"), id="auth"
            ),
            pytest.param(
                api_reply(ok=False, error="channel_not_found"),
                Fail("slack: channel_not_found"),
                id="channel",
            ),
            pytest.param(
                api_reply(ok=False, error="invalid_blocks"), Fail("slack: invalid_blocks"), id="b"
            ),
            pytest.param(
                api_reply(ok=False, error="fatal_error"), Retry("slack: fatal_error"), id="other"
            ),
            pytest.param(Reply(503, "down"), Retry("HTTP 503: down"), id="http-503"),
            pytest.param(Reply(404, "nope"), Fail("HTTP 404: nope"), id="http-404"),
            pytest.param(
                Reply(200, "<html>proxy</html>"),
                Retry("HTTP 200: not a Slack API answer"),
                id="not-json",
            ),
        ],
    )
    async def test_answers(
        self, sink: HttpSink, deps: HandlerDeps, reply: Reply, expected: Outcome
    ) -> None:
        """Rate limits and unknown errors retry (after Retry-After); permanent errors fail."""
        sink.script.append(reply)
        outcome = await bot(sink, deps).handle(delivery())
        assert outcome == expected
        assert_no_secret(outcome)

    async def test_failed_post_does_not_thread(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """After a permanent failure the job still has no thread to reply in."""
        sink.script.extend([api_reply(ok=False, error="invalid_auth"), api_reply(ok=True, ts="9")])
        handler = bot(sink, deps)
        assert await handler.handle(delivery("job-z")) == Fail("slack: invalid_auth")
        await handler.handle(delivery("job-z", number=2))
        assert "thread_ts" not in posted(sink, 1)

    async def test_connection_refused(self, deps: HandlerDeps) -> None:
        """An unreachable Web API is retried, and the error names neither token nor URL."""
        options = {
            "bot_token": TOKEN,
            "channel": "C123",
            "api_url": f"http://127.0.0.1:{closed_port()}/api/",
        }
        outcome = await SlackHandler.from_options(options, deps).handle(delivery())
        assert isinstance(outcome, Retry)
        assert outcome.error.startswith("ConnectError")
        assert_no_secret(outcome)
