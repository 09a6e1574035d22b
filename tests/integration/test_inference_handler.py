"""The inference handler over real HTTP and a real store: the LLMTune client talks to a local
sink scripted as LLMTune's inference endpoint, runs are kept on SQLite and PostgreSQL, and the
emitted `inference.completed` body is recorded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.clock import FakeClock
from service.events import DEFAULT_WORKSPACE, Source
from service.handlers.base import Delivery, Fail, HandlerDeps, InferenceDeps, Ok, Outcome, Retry
from service.handlers.inference import InferenceHandler
from service.llmtune.client import LLMTuneClient
from service.ports import EmittedEvent
from service.store.db import Database, open_database
from service.store.inference_runs import StoredRuns
from tests.deliveries import a_delivery
from tests.helpers import join_sqlite_threads, single_engine_database
from tests.integration.test_inference_runs import stored_event
from tests.integration.test_slack_handler import closed_port
from tests.sinks import HttpSink, Reply, http_sink

NOW = datetime(2025, 11, 8, 15, 0, tzinfo=UTC)
API_KEY = "llmt-test-SECRETKEY"
MODEL = "ionet-finetune-model-id"
OPTIONS: dict[str, Any] = {"prompts": ["Say hi.", "Count to three."]}


@dataclass
class Emitted:
    """A stand-in for the service's `emit`: records each body and answers a stored event id."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    error: Exception | None = None

    async def __call__(
        self, body: bytes, *, source: Source = "internal", workspace: str = DEFAULT_WORKSPACE
    ) -> EmittedEvent:
        if self.error is not None:
            raise self.error
        self.bodies.append(json.loads(body))
        return EmittedEvent(event_id=f"evt_emitted{len(self.bodies)}", duplicate=False)


def answer(text: str, tokens: int = 7, latency: float = 234) -> Reply:
    """A successful inference answer in LLMTune's documented shape."""
    body = {"text": text, "tokens": tokens, "model": MODEL, "latency": latency}
    return Reply(200, json.dumps(body), content_type="application/json")


def error(status: int, code: str, headers: dict[str, str] | None = None) -> Reply:
    """An LLMTune error answer (nested shape)."""
    body = {"error": {"message": f"{code.lower()} happened", "code": code}}
    return Reply(status, json.dumps(body), headers=headers or {}, content_type="application/json")


def sent(sink: HttpSink, index: int) -> dict[str, Any]:
    """The JSON body of the sink's `index`th request."""
    body: dict[str, Any] = json.loads(sink.received[index].body)
    return body


def model_event(
    event_id: str,
    event_type: str = "training.completed",
    *,
    artifact: str | None = MODEL,
    data: dict[str, Any] | None = None,
    attempt: int = 1,
) -> Delivery:
    """Delivery `dlv_1` to route `smoke` of stored event `event_id`."""
    return a_delivery(
        event_id=event_id,
        route="smoke",
        attempt=attempt,
        payload={"event": event_type, "data": data or {"jobId": "job-1"}},
        received_at=NOW,
        type=event_type,
        artifact=artifact,
        occurred_at=NOW,
    )


@pytest.fixture
def db(engine: AsyncEngine) -> Database:
    return single_engine_database(engine)


@pytest.fixture
def runs(db: Database) -> StoredRuns:
    return StoredRuns(db, FakeClock(NOW))


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with http_sink() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def emitted() -> Emitted:
    return Emitted()


def client_for(http: httpx.AsyncClient, base_url: str) -> LLMTuneClient:
    """The real client, without its own retries: the outbox retries the delivery instead."""
    return LLMTuneClient(http, base_url=base_url, api_key=API_KEY, max_retries=0)


@pytest.fixture
def deps(
    http: httpx.AsyncClient, sink: HttpSink, runs: StoredRuns, emitted: Emitted
) -> HandlerDeps:
    return HandlerDeps(
        http=http,
        clock=FakeClock(NOW),
        public_url="https://receiver.test",
        inference=InferenceDeps(
            client_for(http, f"{sink.url}/v1"),
            runs,
            emitted,
        ),
    )


def handler(deps: HandlerDeps, **options: Any) -> InferenceHandler:
    return InferenceHandler.from_options(OPTIONS | options, deps)


async def test_runs_every_prompt_and_emits(
    db: Database, sink: HttpSink, deps: HandlerDeps, runs: StoredRuns, emitted: Emitted
) -> None:
    """Each prompt goes to the artifact's inference endpoint; runs are kept; one event is
    emitted with every run."""
    sink.script.extend([answer("Hi!", 3, 120), answer("1, 2, 3", 9, 250.5)])
    event_id = await stored_event(db)
    outcome = await handler(deps, temperature=0.2, max_tokens=64).handle(model_event(event_id))
    assert outcome == Ok(f"2 prompt(s) on {MODEL}; event evt_emitted1")
    assert [(r.method, r.path) for r in sink.received] == [
        ("POST", f"/v1/models/{MODEL}/inference")
    ] * 2
    first = sink.received[0]
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent(sink, 0) == {
        "prompt": "Say hi.",
        "temperature": 0.2,
        "maxTokens": 64,
        "metadata": {"deliveryId": "dlv_1", "promptIndex": 0},
    }
    assert sent(sink, 1)["prompt"] == "Count to three."
    kept = await runs.of_delivery("dlv_1")
    assert [(r.status, r.output, r.tokens, r.latency_ms) for r in kept.values()] == [
        ("succeeded", "Hi!", 3, 120.0),
        ("succeeded", "1, 2, 3", 9, 250.5),
    ]
    assert {(r.event_id, r.job_id, r.route, r.model) for r in kept.values()} == {
        (event_id, "job-1", "smoke", MODEL)
    }
    assert emitted.bodies == [
        {
            "id": "inf_dlv_1",
            "event": "inference.completed",
            "data": {
                "jobId": "job-1",
                "modelId": MODEL,
                "sourceEventId": event_id,
                "route": "smoke",
                "runs": [
                    {"prompt": "Say hi.", "output": "Hi!", "tokens": 3, "latencyMs": 120.0},
                    {
                        "prompt": "Count to three.",
                        "output": "1, 2, 3",
                        "tokens": 9,
                        "latencyMs": 250.5,
                    },
                ],
            },
            "timestamp": "2025-11-08T15:00:00.000000Z",
        }
    ]


async def test_rate_limit_retries_only_the_unanswered_prompt(
    db: Database, sink: HttpSink, deps: HandlerDeps, runs: StoredRuns, emitted: Emitted
) -> None:
    """A 429 on prompt 2 retries after Retry-After; the next attempt asks only prompt 2 and
    emits once; an attempt after that asks nothing and emits the same (deduplicated) id."""
    sink.script.extend([answer("Hi!"), error(429, "RATE_LIMITED", {"Retry-After": "7"})])
    event_id = await stored_event(db)
    handle = handler(deps).handle
    outcome = await handle(model_event(event_id))
    assert isinstance(outcome, Retry)
    assert outcome.after == 7.0
    assert outcome.error.startswith("inference: prompt 2 of 2: HTTP 429 RATE_LIMITED")
    assert emitted.bodies == []
    statuses = {i: (r.status, r.error) for i, r in (await runs.of_delivery("dlv_1")).items()}
    assert statuses == {
        0: ("succeeded", None),
        1: ("failed", "HTTP 429 RATE_LIMITED: rate_limited happened"),
    }

    sink.script.append(answer("1, 2, 3"))
    assert isinstance(await handle(model_event(event_id, attempt=2)), Ok)
    assert [sent(sink, i)["prompt"] for i in range(len(sink.received))] == [
        "Say hi.",
        "Count to three.",
        "Count to three.",
    ]
    [body] = emitted.bodies
    assert [run["output"] for run in body["data"]["runs"]] == ["Hi!", "1, 2, 3"]

    assert isinstance(await handle(model_event(event_id, attempt=3)), Ok)
    assert len(sink.received) == 3
    assert [b["id"] for b in emitted.bodies] == ["inf_dlv_1", "inf_dlv_1"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        pytest.param(error(402, "PAYMENT_REQUIRED"), Fail, id="402-no-credits"),
        pytest.param(error(400, "INVALID_REQUEST"), Fail, id="400"),
        pytest.param(error(401, "UNAUTHORIZED"), Fail, id="401"),
        pytest.param(error(404, "NOT_FOUND"), Fail, id="404"),
        pytest.param(error(500, "INTERNAL"), Retry, id="500"),
        pytest.param(error(503, "UNAVAILABLE"), Retry, id="503"),
    ],
)
async def test_llmtune_errors(
    db: Database,
    sink: HttpSink,
    deps: HandlerDeps,
    runs: StoredRuns,
    emitted: Emitted,
    reply: Reply,
    expected: type[Outcome],
) -> None:
    """Permanent errors fail the delivery, server errors retry it; both record a failed run
    and stop before the next prompt."""
    sink.script.append(reply)
    event_id = await stored_event(db)
    outcome = await handler(deps).handle(model_event(event_id))
    assert isinstance(outcome, expected)
    assert f"HTTP {reply.status}" in repr(outcome)
    assert "SECRETKEY" not in repr(outcome)
    [run] = (await runs.of_delivery("dlv_1")).values()
    assert run.status == "failed"
    assert run.error is not None
    assert run.error.startswith(f"HTTP {reply.status} ")
    assert len(sink.received) == 1
    assert emitted.bodies == []


async def test_unreachable_llmtune_retries(
    db: Database, http: httpx.AsyncClient, runs: StoredRuns, emitted: Emitted
) -> None:
    """No answer at all is worth a retry, and is recorded as a failed run."""
    deps = HandlerDeps(
        http=http,
        clock=FakeClock(NOW),
        public_url="https://receiver.test",
        inference=InferenceDeps(
            client_for(http, f"http://127.0.0.1:{closed_port()}/v1"),
            runs,
            emitted,
        ),
    )
    event_id = await stored_event(db)
    outcome = await handler(deps).handle(model_event(event_id))
    assert isinstance(outcome, Retry)
    assert "UNREACHABLE" in outcome.error
    assert outcome.after is None
    assert (await runs.of_delivery("dlv_1"))[0].status == "failed"


async def test_model_id_with_a_slash(db: Database, sink: HttpSink, deps: HandlerDeps) -> None:
    """A `model.deployed` event's `data.modelId` "org/name" reaches `/models/org/name/...`."""
    sink.script.extend([answer("a"), answer("b")])
    event_id = await stored_event(db)
    deployed = model_event(
        event_id,
        "model.deployed",
        artifact=None,
        data={"deploymentId": "deploy-1", "modelId": "meta-llama/Llama-3.3-70B-Instruct"},
    )
    assert isinstance(await handler(deps).handle(deployed), Ok)
    assert sink.received[0].path == "/v1/models/meta-llama/Llama-3.3-70B-Instruct/inference"


async def test_other_events_make_no_call(
    db: Database, sink: HttpSink, deps: HandlerDeps, runs: StoredRuns, emitted: Emitted
) -> None:
    """An event that brings no new model is delivered without asking LLMTune anything."""
    event_id = await stored_event(db)
    started = model_event(event_id, "training.started")
    assert await handler(deps).handle(started) == Ok("not a model event")
    assert sink.received == []
    assert await runs.of_delivery("dlv_1") == {}
    assert emitted.bodies == []


async def test_no_model_fails(db: Database, sink: HttpSink, deps: HandlerDeps) -> None:
    """A model event naming no model (and no `model` option) fails without a call."""
    event_id = await stored_event(db)
    bare = model_event(event_id, artifact=None)
    assert await handler(deps).handle(bare) == Fail("no model id in the event")
    assert sink.received == []


async def test_model_option_is_the_fallback(
    db: Database, sink: HttpSink, deps: HandlerDeps
) -> None:
    """The route's `model` option is asked when the event names no model."""
    sink.script.extend([answer("a"), answer("b")])
    event_id = await stored_event(db)
    bare = model_event(event_id, artifact=None)
    assert isinstance(await handler(deps, model="org/base").handle(bare), Ok)
    assert sink.received[0].path == "/v1/models/org/base/inference"


async def test_emit_failure_retries_without_asking_again(
    db: Database, sink: HttpSink, deps: HandlerDeps, emitted: Emitted
) -> None:
    """If the event cannot be stored the delivery retries; the answered prompts are not asked
    again, only the event is emitted."""
    sink.script.extend([answer("a"), answer("b")])
    event_id = await stored_event(db)
    handle = handler(deps).handle
    emitted.error = OSError("store down")
    outcome = await handle(model_event(event_id))
    assert outcome == Retry("inference: inference.completed not stored (OSError)")
    emitted.error = None
    assert isinstance(await handle(model_event(event_id, attempt=2)), Ok)
    assert len(sink.received) == 2
    assert len(emitted.bodies) == 1


async def test_changed_prompt_is_asked_again(
    db: Database, sink: HttpSink, deps: HandlerDeps, emitted: Emitted
) -> None:
    """A run answered for a prompt the route no longer has is not reused."""
    sink.script.extend([answer("a"), answer("b"), answer("c")])
    event_id = await stored_event(db)
    first = handler(deps, prompts=["one", "two"])
    emitted.error = OSError("store down")  # leave the delivery unfinished
    assert isinstance(await first.handle(model_event(event_id)), Retry)
    emitted.error = None
    edited = handler(deps, prompts=["one", "TWO"])
    assert isinstance(await edited.handle(model_event(event_id, attempt=2)), Ok)
    assert [sent(sink, i)["prompt"] for i in range(3)] == ["one", "two", "TWO"]
    assert [run["output"] for run in emitted.bodies[0]["data"]["runs"]] == ["a", "c"]


async def test_unreachable_store_retries_before_any_call(
    sink: HttpSink, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Without the run store the handler cannot know what was answered: it retries, asking
    LLMTune nothing."""
    db = open_database(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db")
    try:
        deps = HandlerDeps(
            http=http,
            clock=FakeClock(NOW),
            public_url="https://receiver.test",
            inference=InferenceDeps(
                client_for(http, f"{sink.url}/v1"),
                StoredRuns(db, FakeClock(NOW)),
                Emitted(),
            ),
        )
        outcome = await handler(deps).handle(model_event("evt_1"))
    finally:
        await db.aclose()
        await asyncio.to_thread(join_sqlite_threads)
    assert isinstance(outcome, Retry)
    assert outcome.error.startswith("inference: run store unavailable")
    assert sink.received == []
