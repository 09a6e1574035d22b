"""The JSON shapes the admin API answers with, as TypedDicts: the response half of each route's
`Operation`, for an OpenAPI document and for readers.

`schemas.py` builds these dicts from rows; the API tests check that each listed item has exactly
the keys declared here, so the two cannot drift apart. Times are RFC 3339 strings (`...Z`).
"""

# No `from __future__ import annotations`: TypedDict must see `NotRequired` at runtime, so that
# `__required_keys__` is right for whoever generates a schema from these. typing_extensions'
# TypedDict: pydantic (the OpenAPI document's `TypeAdapter`) refuses `typing`'s before 3.12.
from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict


class EventSummary(TypedDict):
    """An event as listed."""

    id: str
    type: str
    source: str
    workspace: str
    jobId: str | None
    externalId: str | None
    dedupKey: str
    receivedAt: str
    occurredAt: str | None
    verified: bool
    isTest: bool
    duplicateCount: int
    lastDuplicateAt: str | None
    bodyBytes: int


class Header(TypedDict):
    """A stored request header (signature values redacted)."""

    name: str
    value: str


class DeliveryView(TypedDict):
    """A delivery of an event to a route."""

    id: str
    eventId: str
    route: str
    handler: str
    jobId: str | None
    status: str
    attempts: int
    nextAttemptAt: str | None
    lastError: str | None
    createdAt: str
    updatedAt: str


class AttemptView(TypedDict):
    """One attempt of a delivery."""

    number: int
    startedAt: str
    durationMs: float | None  # fractional milliseconds, as measured
    outcome: str
    detail: str | None


class DeliveryDetail(TypedDict):
    """A delivery with every attempt: as `DeliveryView`, but `attempts` lists them."""

    id: str
    eventId: str
    route: str
    handler: str
    jobId: str | None
    status: str
    attempts: list[AttemptView]
    nextAttemptAt: str | None
    lastError: str | None
    createdAt: str
    updatedAt: str


class EventDetail(EventSummary):
    """An event with payload, raw body, redacted headers and deliveries."""

    payload: dict[str, Any]
    rawBody: str
    headers: list[Header]
    deliveries: list[DeliveryView]


class JobSummary(TypedDict):
    """A job as listed (`webhookUrl` on single-job answers when it has a callback URL; a
    read-scoped token sees `{token}` in place of the callback token, a credential)."""

    id: str
    llmtuneJobId: str | None
    status: str
    baseModel: str | None
    artifact: str | None
    deploymentId: str | None
    metrics: dict[str, Any] | None
    error: str | None
    dataset: str | None
    trainingMethod: str | None
    hyperparameters: dict[str, Any] | None
    idempotencyKey: str | None
    submitError: str | None
    submittedAt: str | None
    startedAt: str | None
    finishedAt: str | None
    deployedAt: str | None
    lastPolledAt: str | None
    createdAt: str
    updatedAt: str
    webhookUrl: NotRequired[str]


class JobDetail(JobSummary):
    """A job with its timeline, events, deliveries and inference runs."""

    timeline: list[dict[str, Any]]
    events: list[EventSummary]
    deliveries: list[DeliveryView]
    inferenceRuns: list[dict[str, Any]]


class RetriedDelivery(DeliveryView):
    """`POST /admin/deliveries/{id}/retry`: the delivery as it now stands."""

    retried: bool  # false when it was already pending or in flight (nothing changed)


class RetriedCount(TypedDict):
    """`POST /admin/deliveries/retry`: how many deliveries were made due."""

    retried: int


class Replayed(TypedDict):
    """`POST /admin/events/{id}/replay`: how many deliveries were queued."""

    eventId: str
    queued: int


class Rejection(TypedDict):
    """A refused webhook request: never its body or a header value."""

    id: str
    receivedAt: str
    reason: str
    status: int
    path: str
    workspace: str | None
    clientAddress: str | None
    bodyBytes: int | None
    bodySha256: str | None  # the first 16 hex digits, when the body was read
    headerNames: list[str]


class SentTestEvent(EventSummary):
    """`POST /admin/test-event`: the stored event and the routes it was queued to."""

    routes: list[str]


class RouteView(TypedDict):
    """A configured route, without its options (they hold secrets); an `http` route's signing,
    public key and destination host are shown, null for other handlers."""

    name: str
    handler: str
    events: list[str]
    enabled: bool
    workspaces: list[str] | None  # null: events of every workspace
    maxAttempts: int
    rateLimit: float | None  # deliveries per second, per process
    signing: Literal["v1", "v1a", "both"] | None
    publicKey: str | None  # `whpk_...`: verifies the route's `v1a` signatures
    destinationHost: str | None


class RouteList(TypedDict):
    """`GET /admin/routes`: every configured route in file order (not paged: there are few)."""

    items: list[RouteView]
