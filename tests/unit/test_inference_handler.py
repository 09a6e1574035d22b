"""The inference handler's pure parts: route options, which model is asked, the shape of the
emitted `inference.completed` event, and what start-up says when a dependency is missing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from service.clock import SystemClock
from service.dispatch.routes_file import parse_routes
from service.events import DEFAULT_WORKSPACE, INTERNAL_EVENTS, KNOWN_EVENTS, Source
from service.handlers.base import Delivery, HandlerDeps, InferenceDeps, OptionsError
from service.handlers.inference import (
    EVENT_OUTPUT_CHARS,
    InferenceHandler,
    InferenceOptions,
    completed_event,
    model_of,
    parse_options,
)
from service.handlers.registry import BUILTIN, RouteError, available, build_handlers
from service.llmtune.client import LLMTuneClient
from service.ports import EmittedEvent, InferenceRun
from service.routing import Subscription
from service.webhooks.normalize import normalize
from tests.deliveries import a_delivery

NOW = datetime(2025, 11, 8, 15, 0, tzinfo=UTC)


class NoRuns:
    """An `InferenceRuns` that is never called (start-up only builds the handler)."""

    async def of_delivery(self, delivery_id: str) -> dict[int, InferenceRun]:
        raise AssertionError("not called")

    async def record(self, run: InferenceRun) -> None:
        raise AssertionError("not called")


async def never_emitted(
    body: bytes, *, source: Source = "internal", workspace: str = DEFAULT_WORKSPACE
) -> EmittedEvent:
    raise AssertionError("not called")


def delivery(
    *, artifact: str | None = None, data: dict[str, Any] | None = None, is_test: bool = False
) -> Delivery:
    """A `training.completed` delivery of job-1 with the given artifact and body data."""
    return a_delivery(
        id="dlv_9",
        route="smoke",
        event_id="evt_9",
        payload={"event": "training.completed", "data": data or {}},
        received_at=NOW,
        # The stored event's id and the webhook's own differ, as after a normalization.
        dedup_key="id:evt_src",
        external_id="evt_src",
        artifact=artifact,
        occurred_at=None,
        is_test=is_test,
    )


def run(index: int, output: str = "out") -> InferenceRun:
    return InferenceRun(
        delivery_id="dlv_9",
        prompt_index=index,
        event_id="evt_9",
        job_id="job-1",
        route="smoke",
        model="ft-1",
        prompt=f"p{index}",
        status="succeeded",
        output=output,
        tokens=4,
        latency_ms=12.5,
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def deps_of(http: httpx.AsyncClient, *, llmtune: bool = True) -> HandlerDeps:
    client = LLMTuneClient(http, base_url="https://api.llmtune.test/v1", api_key="k")
    return HandlerDeps(
        http=http,
        clock=SystemClock(),
        public_url="https://receiver.test",
        inference=InferenceDeps(client, NoRuns(), never_emitted) if llmtune else None,
    )


class TestOptions:
    def test_all_options(self) -> None:
        """Every option is read and kept (temperature as a float)."""
        parsed = parse_options(
            {"prompts": ["a", "b"], "temperature": 1, "max_tokens": 8192, "model": " org/m "}
        )
        assert parsed == InferenceOptions(
            prompts=("a", "b"), temperature=1.0, max_tokens=8192, model="org/m"
        )

    def test_only_prompts(self) -> None:
        """Prompts alone are enough; the rest is left to LLMTune's defaults."""
        assert parse_options({"prompts": ["a"]}) == InferenceOptions(prompts=("a",))

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            pytest.param({}, "prompts: required", id="no-prompts"),
            pytest.param({"prompts": "hi"}, "prompts: must be a non-empty list", id="string"),
            pytest.param({"prompts": []}, "prompts: must be a non-empty list", id="empty"),
            pytest.param({"prompts": ["a"] * 21}, "prompts: at most 20", id="too-many"),
            pytest.param({"prompts": ["a", " "]}, "prompts: prompt 2 must be", id="blank"),
            pytest.param({"prompts": [1]}, "prompts: prompt 1 must be", id="not-text"),
            pytest.param({"prompts": ["a\x00"]}, "prompts: prompt 1 contains a NUL", id="nul"),
            pytest.param({"prompts": ["a" * 20_001]}, "prompts: prompt 1 is over", id="long"),
            pytest.param({"prompts": ["a"], "temperature": 2.5}, "temperature:", id="hot"),
            pytest.param({"prompts": ["a"], "temperature": -0.1}, "temperature:", id="cold"),
            pytest.param({"prompts": ["a"], "temperature": "1"}, "temperature:", id="t-text"),
            pytest.param({"prompts": ["a"], "temperature": True}, "temperature:", id="t-bool"),
            pytest.param({"prompts": ["a"], "max_tokens": 0}, "max_tokens:", id="none"),
            pytest.param({"prompts": ["a"], "max_tokens": 8193}, "max_tokens:", id="lots"),
            pytest.param({"prompts": ["a"], "max_tokens": 1.5}, "max_tokens:", id="fraction"),
            pytest.param({"prompts": ["a"], "max_tokens": True}, "max_tokens:", id="mt-bool"),
            pytest.param({"prompts": ["a"], "model": ""}, "model:", id="model-empty"),
            pytest.param({"prompts": ["a"], "model": 3}, "model:", id="model-number"),
            pytest.param({"prompts": ["a"], "model": "m" * 201}, "model:", id="model-long"),
            pytest.param({"prompts": ["a"], "topP": 1}, "topP: unknown option", id="unknown"),
        ],
    )
    def test_refused(self, options: dict[str, Any], message: str) -> None:
        """Each unusable option is named, with what is wrong with it."""
        with pytest.raises(OptionsError) as caught:
            parse_options(options)
        assert str(caught.value).startswith(message)


class TestDependencies:
    async def test_needs_the_llmtune_client(self, http: httpx.AsyncClient) -> None:
        """Without an API key there is no client, and the route cannot be served."""
        with pytest.raises(OptionsError, match="LLMTUNE_API_KEY"):
            InferenceHandler.from_options({"prompts": ["a"]}, deps_of(http, llmtune=False))

    async def test_start_up_names_the_route(self, http: httpx.AsyncClient) -> None:
        """The registry knows the handler, and a route it cannot serve stops start-up."""
        assert BUILTIN["inference"] is InferenceHandler
        route = Subscription(
            "smoke", "inference", ("training.completed",), options={"prompts": ["a"]}
        )
        with pytest.raises(RouteError, match=r"^route 'smoke': .*LLMTUNE_API_KEY"):
            build_handlers([route], deps_of(http, llmtune=False), available())
        built = build_handlers([route], deps_of(http), available())
        assert isinstance(built["smoke"], InferenceHandler)


class TestModel:
    @pytest.mark.parametrize(
        ("artifact", "data", "fallback", "expected"),
        [
            pytest.param("ft-1", {"modelId": "m-2"}, "m-3", "ft-1", id="artifact-first"),
            pytest.param(None, {"modelId": "org/m-2"}, "m-3", "org/m-2", id="modelId"),
            pytest.param(None, {"model_id": "m-2"}, "m-3", "m-2", id="model_id"),
            pytest.param(None, {"modelId": 7, "model_id": " "}, "m-3", "m-3", id="unusable"),
            pytest.param(None, {}, "m-3", "m-3", id="option"),
            pytest.param(None, {}, None, None, id="none"),
        ],
    )
    def test_which_model(
        self,
        artifact: str | None,
        data: dict[str, Any],
        fallback: str | None,
        expected: str | None,
    ) -> None:
        """The trained artifact, else the body's model id, else the route's `model` option."""
        assert model_of(delivery(artifact=artifact, data=data), fallback) == expected

    def test_body_without_data_object(self) -> None:
        """A body whose `data` is not an object gives no model (and does not raise)."""
        odd = delivery()
        odd.payload["data"] = ["modelId"]
        assert model_of(odd, None) is None


class TestCompletedEvent:
    def test_normalizes_like_an_llmtune_event(self) -> None:
        """The body reads back as `inference.completed` of the job and model, deduplicated by
        its fixed id."""
        body = completed_event(delivery(), "org/ft-1", [run(0), run(1)], now=NOW)
        raw = orjson.dumps(body)
        event = normalize(orjson.loads(raw), raw)
        assert "inference.completed" in INTERNAL_EVENTS & KNOWN_EVENTS
        assert (event.type, event.job_id, event.model) == (
            "inference.completed",
            "job-1",
            "org/ft-1",
        )
        assert (event.external_id, event.dedup_key) == ("inf_dlv_9", "id:inf_dlv_9")
        assert event.occurred_at == NOW
        assert not event.is_test

    def test_runs_in_prompt_order(self) -> None:
        """Each run is its prompt, output, tokens and latency, in the order of the prompts."""
        body = completed_event(delivery(), "ft-1", [run(0, "zero"), run(1, "one")], now=NOW)
        assert body["data"]["runs"] == [
            {"prompt": "p0", "output": "zero", "tokens": 4, "latencyMs": 12.5},
            {"prompt": "p1", "output": "one", "tokens": 4, "latencyMs": 12.5},
        ]

    def test_long_outputs_are_clipped(self) -> None:
        """The event carries at most a few thousand characters of each output."""
        body = completed_event(delivery(), "ft-1", [run(0, "x" * 10_000)], now=NOW)
        output: str = body["data"]["runs"][0]["output"]
        assert len(output) == EVENT_OUTPUT_CHARS
        assert output.endswith("…")

    def test_a_test_event_begets_a_test_event(self) -> None:
        """The follow-up of a test delivery is marked as a test too."""
        body = completed_event(delivery(is_test=True), "ft-1", [run(0)], now=NOW)
        raw = orjson.dumps(body)
        assert normalize(orjson.loads(raw), raw).is_test


async def test_a_routes_file_route(http: httpx.AsyncClient) -> None:
    """A route written in the routes file, as the docs show it, builds the handler."""
    text = """
[[routes]]
name = "smoke"
handler = "inference"
events = ["training.completed", "model.deployed"]
options = { prompts = ["Say hi.", "Sum 2 and 2."], temperature = 0.2, max_tokens = 256 }
"""
    [route] = parse_routes(text, {})
    built = build_handlers([route], deps_of(http), available())
    assert isinstance(built["smoke"], InferenceHandler)
    assert parse_options(route.options) == InferenceOptions(
        prompts=("Say hi.", "Sum 2 and 2."), temperature=0.2, max_tokens=256
    )
