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
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from service.clock import Clock
from service.events import Event
from service.handlers.outbound import Outbound

# Handlers have always imported these from here (third-party ones too); they now live one floor
# down, in `service.ports`, so the store can implement them without importing handlers.
from service.ports import EmitEvent as EmitEvent
from service.ports import HandlerMemory as HandlerMemory
from service.ports import InferenceRun as InferenceRun
from service.ports import InferenceRuns as InferenceRuns
from service.ports import MemoryUnavailable as MemoryUnavailable
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


class Options(BaseModel):
    """A handler's options: no key beyond its fields, no coercion (TOML gives exact types).
    `must` says what each option must be (`"name"`, or `"name.range"` for a value out of its
    bounds); a validator's `PydanticCustomError("option", ...)` message is used as it is."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)
    must: ClassVar[Mapping[str, str]] = {}


# NaN and infinity are out of any range a number of seconds can have.
_RANGE = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}
)
_LENGTH = frozenset({"too_short", "too_long"})
OptionsT = TypeVar("OptionsT", bound=Options)


def validated(model: type[OptionsT], options: Mapping[str, Any]) -> OptionsT:
    """`options` as `model`, else the `OptionsError` of the first problem. The message is built
    from the option's name and the kind of error only, never from a value: options hold secrets."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
    unknown = sorted(str(error["loc"][0]) for error in errors if error["type"] == "extra_forbidden")
    if unknown:
        known = ", ".join(sorted(f.alias or key for key, f in model.model_fields.items()))
        raise OptionsError(f"{unknown[0]}: unknown option (known: {known})")
    error = errors[0]
    name = str(error["loc"][0])
    if error["type"] == "option":
        raise OptionsError(f"{name}: {error['msg']}")
    if error["type"] == "missing":
        raise OptionsError(f"{name}: {model.must.get(f'{name}.missing', 'required')}")
    kind = "range" if error["type"] in _RANGE else "length" if error["type"] in _LENGTH else ""
    must = model.must.get(f"{name}.{kind}") or model.must.get(name, "is not valid")
    raise OptionsError(f"{name}: {must}")


@dataclass(frozen=True, slots=True)
class InferenceDeps:
    """What the `inference` handler needs, all or nothing: LLMTune answers the prompts, `runs`
    keeps each answer (so a retried delivery redoes only what failed), `emit` stores the
    `inference.completed` event through the one ingest service."""

    llmtune: LLMTuneClient
    runs: InferenceRuns
    emit: EmitEvent


@dataclass(frozen=True, slots=True)
class HandlerDeps:
    """What the service offers the handlers it builds; each `from_options` takes what it needs.

    Every handler may use `http`, `clock` and `public_url`. `outbound` is the pooled, checked
    POST path of the `http` and `slack` handlers (its owner closes it; a default one opens
    nothing until used, and whoever uses it closes it). `memory` is the Slack handler's
    (each job's thread); None where nothing keeps it (handlers built only to check the routes
    file, and tests). `inference` is None without LLMTUNE_API_KEY, and the inference handler
    then refuses its route.
    """

    http: httpx.AsyncClient
    clock: Clock
    public_url: str
    memory: HandlerMemory | None = None
    inference: InferenceDeps | None = None
    outbound: Outbound = field(default_factory=Outbound)


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
