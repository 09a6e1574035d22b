"""An async client for the LLMTune REST API: submit and poll fine-tunes, run inference, send
batches. It does HTTP through the `httpx.AsyncClient` it is given and holds no other state.

Answers are read leniently by `answers.py`; failures become the typed errors of `errors.py`.
429, 5xx and "no answer" are retried a bounded number of times, honouring `Retry-After`;
submissions carry an `Idempotency-Key` sent unchanged on every attempt, so a retry after a lost
answer cannot start a second job. The API key goes into the `Authorization` header and nowhere
else: never into a log line or an exception.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import structlog

from service.llmtune.answers import (
    BatchAccepted,
    InferenceResult,
    JobStatus,
    SubmittedJob,
    read_batch,
    read_inference,
    read_job_status,
    read_submission,
)
from service.llmtune.errors import (
    BadRequest,
    LLMTuneError,
    UnexpectedAnswer,
    Unreachable,
    error_class,
    parse_error_body,
)
from service.retry_after import parse_retry_after

MAX_BATCH = 100  # requests per batch call (contract §2.3)
MAX_DELAY = 30.0  # seconds: the longest wait between attempts, whatever Retry-After says
# Failures where LLMTune may never have seen the request, or never answered it. Local faults
# (a malformed URL, an unsupported scheme) are not here: retrying cannot fix them.
_NO_ANSWER = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FineTuneRequest:
    """What to fine-tune; `hyperparameters` are sent as given (learningRate, epochs, ...)."""

    base_model: str
    dataset: str
    training_method: str = "sft"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One prompt of a batch; `id` pairs it with its result."""

    id: str
    prompt: str


class LLMTuneClient:
    """The LLMTune API over a shared `httpx.AsyncClient` (whose timeouts apply)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        max_retries: int = 2,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_retries < 0 or backoff_seconds < 0:
            raise ValueError("max_retries and backoff_seconds must not be negative")
        self._http = http
        self._base = _check_base_url(base_url)
        self._headers = {"authorization": f"Bearer {api_key}", "accept": "application/json"}
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        self._sleep = sleep

    async def submit_fine_tune(
        self, request: FineTuneRequest, *, idempotency_key: str
    ) -> SubmittedJob:
        """Start a fine-tune; a repeat with the same key returns the first job."""
        if not idempotency_key.strip():
            raise BadRequest("an idempotency key is required", code="INVALID_REQUEST")
        status, body = await self._call(
            "POST", "/fine-tune", fine_tune_body(request), idempotency_key=idempotency_key
        )
        submitted = read_submission(body)
        if submitted is None:
            raise UnexpectedAnswer("the submission answer carries no job id", status=status)
        return submitted

    async def get_fine_tune(self, job_id: str) -> JobStatus:
        """A fine-tune's status, progress, metrics, error and artifact."""
        _, body = await self._call("GET", f"/fine-tune/{path_segment(job_id)}")
        return read_job_status(body, job_id=job_id)

    async def inference(
        self,
        model_id: str,
        prompt: str,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> InferenceResult:
        """One completion from a deployed model (`model_id` may contain "/")."""
        payload = _without_none(
            prompt=prompt,
            temperature=temperature,
            maxTokens=max_tokens,
            metadata=dict(metadata) if metadata is not None else None,
        )
        return await self._infer(f"/models/{model_path(model_id)}/inference", payload)

    async def playground_inference(
        self,
        model_id: str,
        prompt: str,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> InferenceResult:
        """One completion through the playground endpoint (smoke tests)."""
        payload = _without_none(
            modelId=model_id, prompt=prompt, temperature=temperature, maxTokens=max_tokens
        )
        return await self._infer("/playground/inference", payload)

    async def batch_inference(
        self,
        model_id: str,
        items: Sequence[BatchItem],
        *,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> BatchAccepted:
        """Send 1 to 100 prompts at once; a wrong count is refused before anything is sent.

        Without `idempotency_key` a fresh one is made for this call, so that its own retries
        cannot queue the batch twice."""
        if not 0 < len(items) <= MAX_BATCH:
            raise BadRequest(
                f"a batch holds 1 to {MAX_BATCH} requests, not {len(items)}", code="BATCH_SIZE"
            )
        payload = _without_none(
            modelId=model_id,
            requests=[{"id": item.id, "prompt": item.prompt} for item in items],
            webhookUrl=webhook_url,
        )
        key = idempotency_key or str(uuid.uuid4())
        _, body = await self._call("POST", "/batch/inference", payload, idempotency_key=key)
        return read_batch(body)

    async def _infer(self, path: str, payload: dict[str, Any]) -> InferenceResult:
        status, body = await self._call("POST", path, payload)
        result = read_inference(body)
        if result is None:
            raise UnexpectedAnswer("the inference answer carries no text", status=status)
        return result

    async def _call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send with bounded retries of transient failures; the last failure is raised."""
        headers = dict(self._headers)
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        content = None
        if payload is not None:
            headers["content-type"] = "application/json"
            content = orjson.dumps(payload)
        attempt = 0
        while True:
            try:
                return await self._once(method, path, headers, content)
            except LLMTuneError as exc:
                if not exc.retryable or attempt >= self._max_retries:
                    raise
                delay = retry_delay(
                    attempt, exc.retry_after, backoff=self._backoff, jitter=random.random()
                )
                log.warning(
                    "llmtune_retry",
                    method=method,
                    path=path,
                    status=exc.status,
                    code=exc.code,
                    attempt=attempt + 1,
                    delay=round(delay, 3),
                )
                await self._sleep(delay)
                attempt += 1

    async def _once(
        self, method: str, path: str, headers: dict[str, str], content: bytes | None
    ) -> tuple[int, dict[str, Any]]:
        url = f"{self._base}{path}"
        try:
            response = await self._http.request(
                method, url, content=content, headers=headers, follow_redirects=False
            )
        except _NO_ANSWER as exc:
            detail = str(exc) or "no detail"
            raise Unreachable(f"{type(exc).__name__}: {detail}") from exc
        if not response.is_success:
            raise _error_for(response)
        return response.status_code, _json_object(response)


def _check_base_url(base_url: str) -> str:
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        url = httpx.URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("base_url must be an http:// or https:// URL with a host")
    return base_url.rstrip("/")


def _error_for(response: httpx.Response) -> LLMTuneError:
    message, code, details = parse_error_body(response.content)
    retry_after = parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))
    return error_class(response.status_code)(
        message or response.reason_phrase or "no message",
        status=response.status_code,
        code=code,
        details=details,
        retry_after=retry_after,
    )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise UnexpectedAnswer("the answer is not a JSON object", status=response.status_code)
    return body


# Pure parts, tested on their own ---------------------------------------------------------------


def retry_delay(attempt: int, retry_after: float | None, *, backoff: float, jitter: float) -> float:
    """Seconds before retry number `attempt + 1`: LLMTune's `Retry-After` if it gave one, else
    exponential backoff with `jitter` (0 to 1) taking off up to half; never over `MAX_DELAY`."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_DELAY)
    ceiling = min(backoff * 2.0**attempt, MAX_DELAY)
    # Equal jitter: clients that failed together do not come back together, yet each still waits.
    return ceiling * (1.0 - jitter / 2.0)


def path_segment(value: str) -> str:
    """One URL path segment, percent-encoded; empty, "." and ".." are refused."""
    if value in ("", ".", ".."):
        raise BadRequest(f"{value!r} is not a usable id", code="INVALID_ID")
    return quote(value, safe="")


def model_path(model_id: str) -> str:
    """A model id as path segments: "org/name" stays two segments, each percent-encoded."""
    return "/".join(path_segment(part) for part in model_id.split("/"))


def fine_tune_body(request: FineTuneRequest) -> dict[str, Any]:
    """The camelCase JSON body of `POST /fine-tune`; empty and absent fields are left out."""
    return _without_none(
        baseModel=request.base_model,
        dataset=request.dataset,
        trainingMethod=request.training_method,
        hyperparameters=dict(request.hyperparameters) or None,
        webhookUrl=request.webhook_url,
    )


def _without_none(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}
