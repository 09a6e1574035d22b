"""The domain event every source produces, its dedup key, and the sanitizers it needs. Pure.

Imports nothing of ours and no framework: LLMTune's wire formats (`webhooks/normalize.py`), the
store, the ingest service and the admin API all speak this one `Event`. Everything in an `Event`
is storable as is: text has no NUL characters (PostgreSQL refuses them) and values that end up in
an index are at most 200 characters (longer ones are replaced by their SHA-256).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

MAX_KEY_PART = 200  # longer key parts are hashed: index entries have a size limit
UNKNOWN_TYPE = "unknown"

TRAINING_EVENTS = frozenset({"training.started", "training.completed", "training.failed"})
ONE_SHOT_EVENTS = TRAINING_EVENTS | {"model.deployed", "deployment.created", "deployment.deleted"}
# Events the service itself emits through the same pipeline.
INTERNAL_EVENTS = frozenset({"delivery.dead", "inference.completed"})
KNOWN_EVENTS = ONE_SHOT_EVENTS | {"deployment.paused", "usage.threshold_reached"} | INTERNAL_EVENTS

# Deliveries to the plain webhook path belong to this workspace; others are named in the
# routes file and served at /webhooks/llmtune/{name}.
DEFAULT_WORKSPACE = "default"

# Where a stored event came from; every source goes through the one ingest service.
Source = Literal["webhook", "job-callback", "poll", "test", "internal"]


@dataclass(frozen=True, slots=True)
class Event:
    """One delivery, whatever the docs version (or internal source) it was shaped by."""

    type: str
    dedup_key: str
    external_id: str | None
    job_id: str | None
    model: str | None
    artifact: str | None
    deployment_id: str | None
    metrics: dict[str, Any] | None
    error: str | None
    occurred_at: datetime | None
    is_test: bool


def clean_text(value: str, limit: int | None = None) -> str:
    """Replace NUL characters (PostgreSQL text refuses them) and clip to `limit` characters."""
    text = value.replace("\x00", "\ufffd")
    return text if limit is None else text[:limit]


def key_part(value: str) -> str:
    """A value fit for an indexed column: itself, or `sha256:<hex>` when longer than 200."""
    text = clean_text(value)
    if len(text) <= MAX_KEY_PART:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_time(value: object) -> datetime | None:
    """Any ISO-8601 timestamp as aware UTC; anything unparsable is simply absent."""
    if not isinstance(value, str) or not 10 <= len(value) <= 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


def dedup_key(
    *, event_type: str, external_id: str | None, job_id: str | None, subject: str | None, raw: bytes
) -> str:
    """`id:<id>`, else for one-shot events `sem:<type>:<job>` (training) or
    `sem:<type>[:<job>]:<deployment or model>` (the others), else `body:<sha256>`."""
    if external_id:
        return f"id:{external_id}"
    if event_type in TRAINING_EVENTS:
        if job_id:
            return f"sem:{event_type}:{job_id}"
    elif event_type in ONE_SHOT_EVENTS and subject:
        # The job is part of a deployment's identity: two jobs ending in one model id, or one
        # model deployed again, are two events (DESIGN.md §4).
        return f"sem:{event_type}:{job_id}:{subject}" if job_id else f"sem:{event_type}:{subject}"
    return "body:" + hashlib.sha256(raw).hexdigest()


def scoped_key(workspace: str, key: str) -> str:
    """A dedup key within its workspace: two LLMTune workspaces never dedupe each other's
    events. The default workspace keeps the bare key (rows stored before workspaces existed)."""
    return key if workspace == DEFAULT_WORKSPACE else f"ws:{workspace}:{key}"


def metric_label(event_type: str) -> str:
    """A bounded metric label: the event name when known, else `other`."""
    return event_type if event_type in KNOWN_EVENTS or event_type == UNKNOWN_TYPE else "other"
