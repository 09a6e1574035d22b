"""The fake's LLMTune API under `/v1` (the O2/E1/I2/AD shapes).

Each request is recorded, then slowed, authenticated and perhaps failed as the switches say,
then answered once per `Idempotency-Key` where LLMTune promises that; only then does its
handler run. Handlers are plain functions from (state, request, JSON body) to an `Answer`.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.fake_llmtune.inference import MAX_BATCH, batch_answer, completion
from service.fake_llmtune.jobs import job_view
from service.fake_llmtune.state import Answer, FakeLLMTune
from service.fake_llmtune.switches import error_body

Handler = Callable[[FakeLLMTune, Request, Any], Answer]
Endpoint = Callable[[Request], Awaitable[Response]]
INJECTED_MESSAGES = {
    402: "insufficient credits",
    429: "rate limit exceeded",
    500: "unexpected error",
}


class ApiError(Exception):
    """A client mistake, answered with `status` and `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Invalid:
    """A body that is not JSON."""


INVALID = _Invalid()


def fake_of(request: Request) -> FakeLLMTune:
    """The state object of the app serving `request`."""
    fake: FakeLLMTune = request.app.state.fake
    return fake


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return INVALID


def json_response(answer: Answer) -> Response:
    """`answer` as an `application/json` response."""
    return Response(
        orjson.dumps(answer.body), answer.status, answer.headers, media_type="application/json"
    )


def _error(fake: FakeLLMTune, status: int, message: str, **headers: str) -> Answer:
    return Answer(status, error_body(status, message, flat=fake.switches.flat_errors), headers)


def endpoint(handler: Handler, *, idempotent: bool = False) -> Endpoint:
    """A Starlette endpoint running `handler` behind recording, switches, auth, idempotency."""

    async def run(request: Request) -> Response:
        fake = fake_of(request)
        raw = await request.body()
        body = _parse(raw)
        shown = raw.decode("utf-8", "replace") if body is INVALID else body
        record = fake.record_request(request.method, request.url.path, request.headers, shown)
        answer = await _answer(fake, request, body, handler, idempotent=idempotent)
        record["status"] = answer.status
        return json_response(answer)

    return run


async def _answer(
    fake: FakeLLMTune, request: Request, body: Any, handler: Handler, *, idempotent: bool
) -> Answer:
    if fake.switches.slow_seconds > 0:
        await fake.sleep(fake.switches.slow_seconds)
    if not fake.authorized(request.headers.get("authorization")):
        return _error(fake, 401, "Invalid API key")
    failure = fake.take_failure()
    if failure is not None:
        message = INJECTED_MESSAGES.get(failure.status, "injected failure")
        return _error(fake, failure.status, message, **failure.headers)
    path = request.url.path
    key = request.headers.get("idempotency-key") if idempotent else None
    first = fake.remembered(path, key) if key else None
    if first is not None:
        return replace(first, headers=first.headers | {"Idempotent-Replayed": "true"})
    try:
        answer = handler(fake, request, body)
    except ApiError as exc:
        return _error(fake, exc.status, exc.message)
    # Only a processed request is remembered; a refused one may be sent again with its key.
    if key and answer.status < 300:
        fake.remember(path, key, answer)
    return answer


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{name} is required and must be a non-empty string")
    return value


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    return None if body.get(name) is None else _text(body, name)


def submit_fine_tune(fake: FakeLLMTune, request: Request, body: Any) -> Answer:
    """`POST /v1/fine-tune`: a pending job."""
    fields = _object(body)
    hyperparameters = fields.get("hyperparameters") or {}
    if not isinstance(hyperparameters, dict):
        raise ApiError(400, "hyperparameters must be a JSON object")
    job = fake.submit(
        base_model=_text(fields, "baseModel"),
        dataset=_text(fields, "dataset"),
        webhook_url=_optional_text(fields, "webhookUrl"),
        training_method=_optional_text(fields, "trainingMethod") or "sft",
        hyperparameters=hyperparameters,
    )
    return Answer(200, {"jobId": job.job_id, "status": "pending"})


def get_fine_tune(fake: FakeLLMTune, request: Request, body: Any) -> Answer:
    """`GET /v1/fine-tune/{jobId}`: the job's state, whatever webhooks were dropped."""
    job = fake.jobs.get(request.path_params["job_id"])
    if job is None:
        raise ApiError(404, f"fine-tune job {request.path_params['job_id']} not found")
    return Answer(200, job_view(job))


def _is_number(value: Any, kind: type | tuple[type, ...] = (int, float)) -> bool:
    # JSON true/false arrive as bool, which Python counts as int.
    return isinstance(value, kind) and not isinstance(value, bool)


def _complete(model: str, fields: dict[str, Any]) -> Answer:
    temperature = fields.get("temperature")
    if temperature is not None and not (_is_number(temperature) and 0 <= temperature <= 2):
        raise ApiError(400, "temperature must be a number from 0 to 2")
    max_tokens = fields.get("maxTokens")
    if max_tokens is not None and not (_is_number(max_tokens, int) and max_tokens >= 1):
        raise ApiError(400, "maxTokens must be a whole number of at least 1")
    prompt = _text(fields, "prompt")
    return Answer(
        200, completion(model, prompt, max_tokens=max_tokens, metadata=fields.get("metadata"))
    )


def model_inference(fake: FakeLLMTune, request: Request, body: Any) -> Answer:
    """`POST /v1/models/{modelId}/inference` (the id may contain `/`)."""
    return _complete(request.path_params["model_id"], _object(body))


def playground_inference(fake: FakeLLMTune, request: Request, body: Any) -> Answer:
    """`POST /v1/playground/inference`: the same answer, the model named in the body."""
    fields = _object(body)
    return _complete(_text(fields, "modelId"), fields)


def batch_inference(fake: FakeLLMTune, request: Request, body: Any) -> Answer:
    """`POST /v1/batch/inference`: queued (no result callback: its shape is undocumented)."""
    fields = _object(body)
    model = _text(fields, "modelId")
    requests = fields.get("requests")
    if not isinstance(requests, list) or not requests:
        raise ApiError(400, "requests must be a non-empty list")
    if len(requests) > MAX_BATCH:
        raise ApiError(400, f"at most {MAX_BATCH} requests per batch, got {len(requests)}")
    batch_id = f"batch-{secrets.token_hex(8)}"
    fake.batches[batch_id] = {
        "modelId": model,
        "requests": requests,
        "webhookUrl": _optional_text(fields, "webhookUrl"),
    }
    return Answer(200, batch_answer(batch_id, requests))


def not_found(fake: FakeLLMTune, request: Request, body: Any) -> Answer:
    """Any other `/v1` path: a 404 in LLMTune's error shape."""
    raise ApiError(404, f"no such endpoint: {request.method} {request.url.path}")


ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def api_routes() -> list[Route]:
    """The `/v1` routes."""
    return [
        Route("/v1/fine-tune", endpoint(submit_fine_tune, idempotent=True), methods=["POST"]),
        Route("/v1/fine-tune/{job_id}", endpoint(get_fine_tune), methods=["GET"]),
        Route("/v1/models/{model_id:path}/inference", endpoint(model_inference), methods=["POST"]),
        Route("/v1/playground/inference", endpoint(playground_inference), methods=["POST"]),
        Route("/v1/batch/inference", endpoint(batch_inference, idempotent=True), methods=["POST"]),
        Route("/v1/{rest:path}", endpoint(not_found), methods=ALL_METHODS),
    ]
