"""The `inference` handler: when a model is ready (`training.completed`, `model.deployed`), run the
route's prompts against it through the LLMTune client, record each run, and emit one internal
`inference.completed` event that routes like any other.

Each prompt's run is recorded (`deps.runs`) before the next one starts, so a retried delivery
redoes only the prompts that have not succeeded and never pays twice for one that did. LLMTune's
failures become outcomes, never exceptions: no credits, a bad request, an unknown model or a bad
key fail the delivery; rate limits, server errors and no answer retry it. Outputs never reach a
log line in full.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, ClassVar

import orjson
import structlog
from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from service.clock import Clock
from service.handlers.base import (
    MAX_ERROR_TEXT,
    Delivery,
    Fail,
    HandlerDeps,
    Ok,
    Options,
    OptionsError,
    Outcome,
    Retry,
    validated,
)
from service.llmtune.client import LLMTuneClient
from service.llmtune.errors import LLMTuneError
from service.ports import EmitEvent, InferenceRun, InferenceRuns, MemoryUnavailable
from service.timestamps import rfc3339

log = structlog.get_logger(__name__)

COMPLETED_EVENT = "inference.completed"  # in service.events.INTERNAL_EVENTS
MODEL_EVENTS = frozenset({"training.completed", "model.deployed"})
SUCCEEDED = "succeeded"
FAILED = "failed"

MAX_PROMPTS = 20
MAX_PROMPT_CHARS = 20_000
MAX_TEMPERATURE = 2.0
MAX_TOKENS = 8192
MAX_MODEL_ID = 200  # model ids are short; anything longer is not one
# What of each run the emitted event carries; the inference_runs table keeps it all. Twenty
# full runs would otherwise approach the body size cap of the ingest path.
EVENT_PROMPT_CHARS = 1000
EVENT_OUTPUT_CHARS = 4000
LOG_PREVIEW_CHARS = 80


def _prompts(value: object) -> tuple[str, ...]:
    # A bare string would otherwise be read as a list of one-character prompts.
    if not isinstance(value, list | tuple) or not value:
        raise _option(f"must be a non-empty list of strings (1 to {MAX_PROMPTS})")
    if len(value) > MAX_PROMPTS:
        raise _option(f"at most {MAX_PROMPTS} prompts, not {len(value)}")
    for number, prompt in enumerate(value, 1):
        if not isinstance(prompt, str) or not prompt.strip():
            raise _option(f"prompt {number} must be a non-empty string")
        if "\x00" in prompt:
            # The store could not keep it as written, so a retry would never match it.
            raise _option(f"prompt {number} contains a NUL character")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise _option(f"prompt {number} is over {MAX_PROMPT_CHARS} characters")
    return tuple(value)


def _model_option(value: object) -> str:
    model = _model_id(value)
    if model is None:
        raise _option(f"must be a model id (a string of 1 to {MAX_MODEL_ID} chars)")
    return model


def _option(message: str) -> PydanticCustomError:
    return PydanticCustomError("option", message)


class InferenceOptions(Options):
    """A route's validated options."""

    must: ClassVar[Mapping[str, str]] = {
        "prompts.missing": f"required (a list of 1 to {MAX_PROMPTS} prompts)",
        "temperature": f"must be a number from 0 to {MAX_TEMPERATURE:g}",
        "max_tokens": f"must be a whole number from 1 to {MAX_TOKENS}",
    }
    prompts: Annotated[tuple[str, ...], BeforeValidator(_prompts)]
    temperature: float | None = Field(None, ge=0.0, le=MAX_TEMPERATURE)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    model: Annotated[str, BeforeValidator(_model_option)] | None = None


def parse_options(options: Mapping[str, Any]) -> InferenceOptions:
    """Validate the route's options; `OptionsError("<option>: <what is wrong>")` otherwise."""
    return validated(InferenceOptions, options)


def _model_id(value: object) -> str | None:
    """`value` as a model id, or None when it cannot be one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > MAX_MODEL_ID or not text.isprintable():
        return None
    return text


def model_of(delivery: Delivery, fallback: str | None) -> str | None:
    """The model to ask: the event's artifact (the trained model), else the body's
    `data.modelId` / `data.model_id`, else the route's `model` option."""
    data = delivery.payload.get("data")
    data = data if isinstance(data, dict) else {}
    for value in (delivery.event.artifact, data.get("modelId"), data.get("model_id")):
        model = _model_id(value)
        if model is not None:
            return model
    return fallback


def completed_event(
    delivery: Delivery, model: str, runs: Sequence[InferenceRun], *, now: datetime
) -> dict[str, Any]:
    """The internal `inference.completed` event, W3-shaped so it normalizes and routes like
    LLMTune's own (type from `event`, job from `data.jobId`, model from `data.modelId`). Its id
    is fixed per delivery, so emitting it again is stored as a duplicate."""
    data: dict[str, Any] = {
        "jobId": delivery.event.job_id,
        "modelId": model,
        "sourceEventId": delivery.event_id,
        "route": delivery.route,
        "runs": [
            {
                "prompt": _clip(run.prompt, EVENT_PROMPT_CHARS),
                "output": _clip(run.output or "", EVENT_OUTPUT_CHARS),
                "tokens": run.tokens,
                "latencyMs": run.latency_ms,
            }
            for run in runs
        ],
    }
    if delivery.event.is_test:
        data["isTest"] = True  # a test event's follow-up is a test too
    return {
        "id": f"inf_{delivery.id}",
        "event": COMPLETED_EVENT,
        "data": data,
        "timestamp": rfc3339(now),
    }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class InferenceHandler:
    """Runs the route's prompts against a newly trained or deployed model."""

    name: ClassVar[str] = "inference"

    def __init__(
        self,
        *,
        options: InferenceOptions,
        llmtune: LLMTuneClient,
        runs: InferenceRuns,
        emit: EmitEvent,
        clock: Clock,
    ) -> None:
        self._options = options
        self._llmtune = llmtune
        self._runs = runs
        self._emit = emit
        self._clock = clock

    @classmethod
    def from_options(cls, options: Mapping[str, Any], deps: HandlerDeps) -> InferenceHandler:
        """`prompts` (required), optional `temperature`, `max_tokens` and `model`; needs the
        LLMTune client (LLMTUNE_API_KEY), the run store and the event emitter."""
        parsed = parse_options(options)
        needs = deps.inference
        if needs is None:
            raise OptionsError("the inference handler needs LLMTUNE_API_KEY to be set")
        return cls(
            options=parsed,
            llmtune=needs.llmtune,
            runs=needs.runs,
            emit=needs.emit,
            clock=deps.clock,
        )

    async def handle(self, delivery: Delivery) -> Outcome:
        """Run every prompt not yet answered, then emit `inference.completed`; never raises for
        LLMTune's or the store's failures."""
        if delivery.event.type not in MODEL_EVENTS:
            return Ok("not a model event")
        model = model_of(delivery, self._options.model)
        if model is None:
            return Fail("no model id in the event")
        try:
            runs = await self._run_all(delivery, model)
        except MemoryUnavailable as exc:
            return Retry(f"inference: run store unavailable ({exc})"[:MAX_ERROR_TEXT])
        if not isinstance(runs, list):
            return runs
        return await self._complete(delivery, model, runs)

    async def _run_all(self, delivery: Delivery, model: str) -> list[InferenceRun] | Outcome:
        """Every prompt's successful run, or the outcome that stopped the round."""
        done = await self._runs.of_delivery(delivery.id)
        runs: list[InferenceRun] = []
        for index, prompt in enumerate(self._options.prompts):
            earlier = done.get(index)
            # Same prompt and model as now: a route's options may change between attempts.
            if earlier and (earlier.status, earlier.prompt, earlier.model) == (
                SUCCEEDED,
                prompt,
                model,
            ):
                runs.append(earlier)
                continue
            run, stop = await self._run_one(delivery, model, index, prompt)
            await self._runs.record(run)
            if stop is not None:
                return stop
            runs.append(run)
        return runs

    async def _run_one(
        self, delivery: Delivery, model: str, index: int, prompt: str
    ) -> tuple[InferenceRun, Outcome | None]:
        run = InferenceRun(
            delivery_id=delivery.id,
            prompt_index=index,
            event_id=delivery.event_id,
            job_id=delivery.event.job_id,
            route=delivery.route,
            model=model,
            prompt=prompt,
            status=FAILED,
        )
        started = time.perf_counter()
        try:
            result = await self._llmtune.inference(
                model,
                prompt,
                temperature=self._options.temperature,
                max_tokens=self._options.max_tokens,
                metadata={"deliveryId": delivery.id, "promptIndex": index},
            )
        except LLMTuneError as exc:
            run = replace(run, error=str(exc)[:MAX_ERROR_TEXT])
            _log_run(run)
            text = f"inference: prompt {index + 1} of {len(self._options.prompts)}: {run.error}"
            stop = Retry(text, after=exc.retry_after) if exc.retryable else Fail(text)
            return run, stop
        # LLMTune reports its own latency "when provided"; else the round trip measured here.
        latency = result.latency_ms
        if latency is None:
            latency = round((time.perf_counter() - started) * 1000, 1)
        run = replace(
            run, status=SUCCEEDED, output=result.text, tokens=result.tokens, latency_ms=latency
        )
        _log_run(run)
        return run, None

    async def _complete(self, delivery: Delivery, model: str, runs: list[InferenceRun]) -> Outcome:
        summary = f"{len(runs)} prompt(s) on {model}"
        body = completed_event(delivery, model, runs, now=self._clock.now())
        try:
            emitted = await self._emit(orjson.dumps(body))
        except Exception as exc:  # the ingest path's failures are not ours to name
            log.warning(
                "inference_event_not_stored",
                route=delivery.route,
                delivery_id=delivery.id,
                error_type=type(exc).__name__,
            )
            # The runs are kept: the retry only emits again (and its fixed id dedupes).
            return Retry(f"inference: {COMPLETED_EVENT} not stored ({type(exc).__name__})")
        return Ok(f"{summary}; event {emitted.event_id}"[:MAX_ERROR_TEXT])


def _log_run(run: InferenceRun) -> None:
    output = run.output or ""
    log.info(
        "inference_run",
        route=run.route,
        delivery_id=run.delivery_id,
        job_id=run.job_id,
        model=run.model,
        prompt_index=run.prompt_index,
        status=run.status,
        tokens=run.tokens,
        latency_ms=run.latency_ms,
        output_chars=len(output),
        output_preview=_clip(output, LOG_PREVIEW_CHARS) if output else None,
        error=run.error,
    )
