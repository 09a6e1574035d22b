"""Turn a W1, W2 or W3 delivery body into one `Event` with its dedup key. Pure.

Called only after the signature is verified. Everything produced here must be storable as is:
strings lose NUL characters (PostgreSQL refuses them) and long values that end up in an index are
replaced by their SHA-256, so the database can never refuse an accepted body.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

MAX_DEPTH = 200  # far deeper than any LLMTune body, and within what orjson can serialize back
MAX_KEY_PART = 200  # longer key parts are hashed: index entries have a size limit
MAX_TEXT = 2000  # free-text fields (error messages) are clipped to this many characters
UNKNOWN_TYPE = "unknown"

TRAINING_EVENTS = frozenset({"training.started", "training.completed", "training.failed"})
ONE_SHOT_EVENTS = TRAINING_EVENTS | {"model.deployed", "deployment.created", "deployment.deleted"}
KNOWN_EVENTS = ONE_SHOT_EVENTS | {"deployment.paused", "usage.threshold_reached"}


class BodyError(ValueError):
    """The body is not a JSON object we accept; `reason` is a short slug."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Event:
    """One delivery, whatever the docs version it was shaped by."""

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


def parse_body(raw: bytes) -> dict[str, Any]:
    """Strict UTF-8 JSON with an object at the top (no NaN/Infinity, bounded nesting)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BodyError("invalid_json", f"body is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise BodyError("not_an_object", "body must be a JSON object")
    if _depth_exceeds(value, MAX_DEPTH):
        raise BodyError("too_deep", f"body nests deeper than {MAX_DEPTH} levels")
    return value


def _depth_exceeds(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def clean_text(value: str, limit: int | None = None) -> str:
    """Drop NUL characters (PostgreSQL text refuses them) and clip to `limit` characters."""
    text = value.replace("\x00", "\ufffd")
    return text if limit is None else text[:limit]


def key_part(value: str) -> str:
    """A value fit for an indexed column: itself, or `sha256:<hex>` when longer than 200."""
    text = clean_text(value)
    if len(text) <= MAX_KEY_PART:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _ident(value: object) -> str | None:
    # Ids arrive as strings, sometimes numbers; booleans and containers are not ids.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        text = str(value)
        return key_part(text) if text else None
    return None


def _first(data: dict[str, Any], *names: str) -> str | None:
    for name in names:
        found = _ident(data.get(name))
        if found is not None:
            return found
    return None


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


def _metrics(value: object) -> dict[str, Any] | None:
    # Metrics are flat by every version's examples; only scalars are kept, so the stored JSON
    # is always small, shallow and serializable.
    if not isinstance(value, dict):
        return None
    kept: dict[str, Any] = {}
    for name, item in list(value.items())[:50]:
        if isinstance(item, str):
            kept[clean_text(name, 100)] = clean_text(item, 200)
        elif isinstance(item, bool | int | float) or item is None:
            kept[clean_text(name, 100)] = item
    return kept or None


def _error(value: object) -> str | None:
    # `data.error` may be absent, a string or an object (undocumented).
    if isinstance(value, dict):
        message = value.get("message")
        if isinstance(message, str):
            return clean_text(message, MAX_TEXT)
        try:
            return clean_text(orjson.dumps(value).decode("utf-8"), MAX_TEXT)
        except orjson.JSONEncodeError:
            return "unrepresentable error object"
    if isinstance(value, str) and value:
        return clean_text(value, MAX_TEXT)
    return None


def _is_test(event_type: str, payload: dict[str, Any], data: dict[str, Any]) -> bool:
    if event_type.endswith(".test"):
        return True
    return any(
        source.get(flag) is True for source in (payload, data) for flag in ("test", "isTest")
    )


def dedup_key(
    *, event_type: str, external_id: str | None, job_id: str | None, subject: str | None, raw: bytes
) -> str:
    """`id:<id>`, else `sem:<type>:<job|deployment>` for one-shot events, else `body:<sha256>`."""
    if external_id:
        return f"id:{external_id}"
    if event_type in ONE_SHOT_EVENTS:
        part = job_id if event_type in TRAINING_EVENTS else subject
        if part:
            return f"sem:{event_type}:{part}"
    return "body:" + hashlib.sha256(raw).hexdigest()


def normalize(payload: dict[str, Any], raw: bytes) -> Event:
    """One `Event` from a parsed body; never raises on any JSON object."""
    name = payload.get("event", payload.get("type"))
    event_type = key_part(name) if isinstance(name, str) and name else UNKNOWN_TYPE
    data = payload.get("data")
    data = data if isinstance(data, dict) else {}
    external_id = _ident(payload.get("id"))
    job_id = _first(data, "jobId", "job_id")
    model = _first(data, "modelName", "baseModel", "model_id", "modelId")
    deployment_id = _first(data, "deploymentId", "deployment_id")
    occurred_at = None
    for field in ("timestamp", "deliveredAt", "created_at"):
        occurred_at = parse_time(payload.get(field))
        if occurred_at is not None:
            break
    return Event(
        type=event_type,
        dedup_key=dedup_key(
            event_type=event_type,
            external_id=external_id,
            job_id=job_id,
            subject=deployment_id or model,
            raw=raw,
        ),
        external_id=external_id,
        job_id=job_id,
        model=model,
        artifact=_first(data, "artifact"),
        deployment_id=deployment_id,
        metrics=_metrics(data.get("metrics")),
        error=_error(data.get("error")),
        occurred_at=occurred_at,
        is_test=_is_test(event_type, payload, data),
    )


def metric_label(event_type: str) -> str:
    """A bounded metric label: the event name when known, else `other`."""
    return event_type if event_type in KNOWN_EVENTS or event_type == UNKNOWN_TYPE else "other"
