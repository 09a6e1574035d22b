"""Tracing: one trace from the webhook request through its group commit to the handler call, in
an in-memory exporter; and nothing of OpenTelemetry imported when tracing is off."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy.ext.asyncio import AsyncEngine

from service.dispatch.worker import WorkerConfig
from service.routing import Subscription
from service.tracing import tracing_to
from tests.helpers import AUTH, make_settings, post_webhook, running_app, w3_body
from tests.sinks import HttpSink, Reply, http_sink

HOOK_SECRET = "whsec_" + base64.b64encode(b"forward-secret-for-tests-32bytes").decode()


def named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [found] = [span for span in spans if span.name == name]
    return found


async def test_one_trace_from_request_to_handler(engine: AsyncEngine, db_url: str) -> None:
    """Server span → `ingest.store` (event id) ← linked `ingest.commit` with its SQL spans;
    the worker's `deliver` span is a child of `ingest.store`, across tasks, via the row."""
    exporter = InMemorySpanExporter()
    tracing = tracing_to(exporter, service_name="test", batch=False)
    settings = make_settings(db_url, run_worker=True)
    async with running_app(
        settings,
        engine,
        tracing=tracing,
        routes=(Subscription("log", "log", ("*",)),),
        worker=WorkerConfig(poll_seconds=0.05),
    ) as client:
        answer = await post_webhook(client, w3_body("training.started", job_id="job-traced"))
        event_id = answer.json()["eventId"]
        async with asyncio.timeout(10):
            while not any(s.name == "deliver" for s in exporter.get_finished_spans()):  # noqa: ASYNC110 - spans come from another task
                await asyncio.sleep(0.05)
        await client.get("/admin/deliveries", headers=AUTH)
    spans = list(exporter.get_finished_spans())
    [server] = [
        s
        for s in spans
        if s.kind == SpanKind.SERVER
        and s.attributes
        and s.attributes.get("http.route") == "/webhooks/llmtune"
    ]
    store = named(spans, "ingest.store")
    commit = named(spans, "ingest.commit")
    deliver = named(spans, "deliver")
    assert store.parent is not None
    assert store.context.trace_id == server.context.trace_id
    assert store.attributes is not None
    assert (store.attributes["event.id"], store.attributes["event.type"]) == (
        event_id,
        "training.started",
    )
    assert [link.context.span_id for link in commit.links] == [store.context.span_id]
    statements = [s for s in spans if s.parent and s.parent.span_id == commit.context.span_id]
    queries = [str((s.attributes or {}).get("db.statement", "")) for s in statements]
    assert any(query.startswith("INSERT INTO events") for query in queries), queries
    assert deliver.context.trace_id == server.context.trace_id
    assert deliver.parent is not None
    assert deliver.parent.span_id == store.context.span_id
    assert deliver.attributes is not None
    assert (deliver.attributes["event.id"], deliver.attributes["delivery.route"]) == (
        event_id,
        "log",
    )


async def client_span_of(
    engine: AsyncEngine, db_url: str, sink: HttpSink, route: Subscription
) -> tuple[ReadableSpan, ReadableSpan]:
    """Post one event through an app whose only route is `route`; its first outbound request's
    CLIENT span, and the `deliver` span of that attempt."""
    exporter = InMemorySpanExporter()
    tracing = tracing_to(exporter, service_name="test", batch=False)
    settings = make_settings(db_url, run_worker=True)
    async with running_app(
        settings,
        engine,
        tracing=tracing,
        routes=(route,),
        worker=WorkerConfig(poll_seconds=0.05),
    ) as client:
        await post_webhook(client, w3_body("training.started", job_id="job-out"))
        await sink.wait_for(1)
        async with asyncio.timeout(10):
            while not any(s.name == "deliver" for s in exporter.get_finished_spans()):  # noqa: ASYNC110 - spans come from another task
                await asyncio.sleep(0.05)
    spans = list(exporter.get_finished_spans())
    posts = [s for s in spans if s.kind == SpanKind.CLIENT and s.name == "POST"]
    deliver = min((s for s in spans if s.name == "deliver"), key=lambda s: s.start_time or 0)
    [post] = [s for s in posts if s.parent and s.parent.span_id == deliver.context.span_id]
    return post, deliver


async def test_a_forward_is_a_client_span_that_carries_its_traceparent(
    engine: AsyncEngine, db_url: str
) -> None:
    """An `http` forward is a CLIENT span under `deliver`; the destination gets a `traceparent`
    of that span, and the span's URL leaves out the query and the user info."""
    async with http_sink() as sink:
        host = f"127.0.0.1:{sink.port}"
        url = f"http://user:USER-SECRET@{host}/hook?token=QUERY-SECRET#frag"
        options = {"url": url, "secret": HOOK_SECRET, "allow_private": True}
        route = Subscription("forward", "http", ("*",), options=options)
        post, deliver = await client_span_of(engine, db_url, sink, route)
        received = sink.received[0]
    assert post.context.trace_id == deliver.context.trace_id
    version, trace_id, span_id, _flags = received.headers["traceparent"].split("-")
    assert (version, int(trace_id, 16), int(span_id, 16)) == (
        "00",
        post.context.trace_id,
        post.context.span_id,
    )
    assert dict(post.attributes or {}) == {
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": sink.port,
        "url.full": f"http://{host}/hook",
        "http.response.status_code": 200,
    }
    assert post.status.status_code == StatusCode.UNSET


async def test_a_slack_webhook_span_hides_the_path_and_marks_errors(
    engine: AsyncEngine, db_url: str
) -> None:
    """A Slack webhook's path (its secret) stays out of the span; a 5xx answer is an error."""
    async with http_sink() as sink:
        sink.default = Reply(status=503)
        route = Subscription(
            "slack", "slack", ("*",), options={"webhook_url": f"{sink.url}/services/SECRETPART"}
        )
        post, _deliver = await client_span_of(engine, db_url, sink, route)
        assert "traceparent" in sink.received[0].headers
    attributes = dict(post.attributes or {})
    assert attributes["url.full"] == f"{sink.url}/REDACTED"
    assert "SECRETPART" not in repr(attributes)
    assert (attributes["http.response.status_code"], attributes["error.type"]) == (503, "503")
    assert post.status.status_code == StatusCode.ERROR


def test_nothing_of_opentelemetry_is_imported_when_tracing_is_off(tmp_path: object) -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT the app is built and no opentelemetry module loads."""
    program = (
        "import sys\n"
        "from service.app import create_app\n"
        "from service.config import Settings\n"
        "create_app(Settings(_env_file=None, database_url='sqlite+aiosqlite:///:memory:'))\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
