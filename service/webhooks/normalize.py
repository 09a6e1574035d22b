"""Turn a W1, W2 or W3 delivery body into one `events.Event`. Pure: LLMTune's wire formats only.

Called only after the signature is verified. Everything produced here must be storable as is
(see `service.events` for the sanitizers), so the database can never refuse an accepted body.
"""

from __future__ import annotations

from typing import Any

import orjson

from service.events import UNKNOWN_TYPE, Event, clean_text, dedup_key, key_part, parse_time

MAX_DEPTH = 200  # far deeper than any LLMTune body, and within what orjson can serialize back
MAX_TEXT = 2000  # free-text fields (error messages) are clipped to this many characters


class BodyError(ValueError):
    """The body is not a JSON object we accept; `reason` is a short slug."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_body(raw: bytes) -> dict[str, Any]:
    """Strict UTF-8 JSON with an object at the top (no NaN/Infinity, bounded nesting)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BodyError("invalid_json", f"body is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise BodyError("not_an_object", "body must be a JSON object")
    if nesting_exceeds(raw, MAX_DEPTH):
        raise BodyError("too_deep", f"body nests deeper than {MAX_DEPTH} levels")
    return value


_KEEP = b'[]{}"'
_DROP = bytes(b for b in range(256) if b not in _KEEP)
# Depth does not depend on the bracket kind and valid JSON pairs them properly: fold `{}` to `[]`.
_FOLD = bytes.maketrans(b"{}", b"[]")


def _brackets_outside_strings(raw: bytes) -> bytes:
    # Valid JSON has backslashes only inside strings, as escapes read left to right: dropping
    # `\\` pairs, then `\"`, leaves only the quotes that open and close strings.
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Keep brackets and quotes. A `""` with no bracket between can go: it is an empty-of-brackets
    # string, or the gap between two strings; either way quotes still alternate open/close.
    kept = text.translate(_FOLD, _DROP).replace(b'""', b"")
    return b"".join(kept.split(b'"')[0::2])


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """True when the JSON text `raw` (already known to be valid) nests deeper than `limit`.

    Works on the bytes with C-speed primitives instead of walking the parsed value (a Python
    walk took 12 ms on a 290 kB body): keep only brackets outside strings, then peel off the
    innermost pairs once per level; the number of rounds is the depth of containers.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _brackets_outside_strings(raw)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)


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
