"""What every handler is: a small object made from one route's options that turns one delivery
into an `Outcome`. No I/O here; handlers do their own, with the dependencies they are given.

A handler never raises for a destination's failure: it answers `Retry` (transient: the worker
backs off and tries again) or `Fail` (permanent: the delivery goes dead at once). An exception
that escapes is treated as `Retry` by the worker and logged as a bug.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import httpx

from service.clock import Clock
from service.events import Event
from service.retry_after import parse_retry_after
from service.timestamps import rfc3339

if TYPE_CHECKING:
    from service.llmtune.client import LLMTuneClient


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one route. `id` is stable across attempts: destinations use it
    as an idempotency key."""

    id: str
    attempt: int
    route: str
    event_id: str
    event: Event
    payload: dict[str, Any]
    received_at: datetime
    source: str = "webhook"


@dataclass(frozen=True, slots=True)
class Ok:
    """Delivered. `summary` is a short note for the attempt record (a status line, an id)."""

    summary: str | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """Not delivered, worth trying again; `after` (seconds) is the destination's own wish."""

    error: str
    after: float | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    """Not delivered and never will be as things stand (bad request, bad credentials)."""

    error: str


Outcome = Ok | Retry | Fail


class OptionsError(ValueError):
    """A route's options do not suit its handler; the message says which option and why."""


class MemoryUnavailable(Exception):
    """The handler memory cannot be read or written right now; the attempt should be retried."""


class HandlerMemory(Protocol):
    """A little durable memory for handlers, shared by every worker process (e.g. which Slack
    thread a job's messages go to)."""

    async def recall(self, scope: str, key: str) -> str | None:
        """The value remembered under (scope, key), or None; `MemoryUnavailable` if unsure."""
        ...

    async def remember(self, scope: str, key: str, value: str) -> str:
        """Keep `value` unless one is already kept; return the kept one."""
        ...


@dataclass(frozen=True, slots=True)
class InferenceRun:
    """One prompt of a follow-up inference, as the `inference` handler records it."""

    delivery_id: str
    prompt_index: int
    event_id: str
    job_id: str | None
    route: str
    model: str
    prompt: str
    status: str  # "succeeded" | "failed"
    output: str | None = None
    tokens: int | None = None
    latency_ms: float | None = None
    error: str | None = None


class InferenceRuns(Protocol):
    """Where inference runs are kept (the store), so a retried delivery redoes only what failed."""

    async def of_delivery(self, delivery_id: str) -> dict[int, InferenceRun]:
        """The runs already recorded for this delivery, by prompt index."""
        ...

    async def record(self, run: InferenceRun) -> None:
        """Keep `run`, replacing an earlier run of the same delivery and prompt."""
        ...


class EmitEvent(Protocol):
    """Stores an event the service itself produced (through the one ingest service) and routes
    it like any other; returns the stored event's id."""

    async def __call__(self, payload: Mapping[str, Any]) -> str: ...


@dataclass(frozen=True, slots=True)
class HandlerDeps:
    """What the service hands every handler it builds."""

    http: httpx.AsyncClient
    clock: Clock
    public_url: str
    memory: HandlerMemory | None = None
    llmtune: LLMTuneClient | None = None
    runs: InferenceRuns | None = None
    emit: EmitEvent | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Handler(Protocol):
    """A route's handler. Built once per route by `from_options`, then called per delivery."""

    name: ClassVar[str]

    async def handle(self, delivery: Delivery) -> Outcome:
        """Deliver one event; never raise for the destination's failures."""
        ...


class HandlerType(Protocol):
    """The class of a handler: its registered name and how it is built from route options."""

    # A plain attribute: the class object, not an instance, satisfies this protocol.
    name: str

    def from_options(self, options: Mapping[str, Any], deps: HandlerDeps) -> Handler:
        """Validate `options` (raise `OptionsError`) and build the route's handler."""
        ...


# 4xx answers that mean "later", not "never" (timeouts, conflicts, too early, rate limits).
_TRANSIENT_4XX = frozenset({408, 409, 425, 429})
MAX_ERROR_TEXT = 500


def outcome_for_status(
    status: int, *, body: str, retry_after: str | None, now: datetime
) -> Outcome:
    """The usual reading of an HTTP answer: 2xx delivered; 5xx and 408/409/425/429 later;
    any other 4xx never (the request itself is wrong)."""
    summary = f"HTTP {status}"
    if 200 <= status < 300:
        return Ok(summary)
    detail = f"{summary}: {body[:MAX_ERROR_TEXT]}" if body else summary
    if status >= 500 or status in _TRANSIENT_4XX:
        return Retry(detail, after=parse_retry_after(retry_after, now))
    return Fail(detail)


def event_document(delivery: Delivery) -> dict[str, Any]:
    """The normalized event as forwarded and rendered: camelCase, times RFC 3339 UTC."""
    event = delivery.event
    return {
        "id": delivery.event_id,
        "type": event.type,
        "jobId": event.job_id,
        "model": event.model,
        "artifact": event.artifact,
        "deploymentId": event.deployment_id,
        "metrics": event.metrics,
        "error": event.error,
        "occurredAt": rfc3339(event.occurred_at),
        "receivedAt": rfc3339(delivery.received_at),
        "isTest": event.is_test,
        "source": delivery.source,
        "payload": delivery.payload,
    }
