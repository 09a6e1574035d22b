"""Reading LLMTune's answers leniently: LLMTune documents little of them (contract §2.5, §5.13),
so a job id may sit under `jobId`, `id` or `job_id`, at the top or inside `data`. Pure: no
network here."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

_CONTAINERS = ("data", "job")  # where an answer may nest its fields


@dataclass(frozen=True, slots=True)
class SubmittedJob:
    """A fine-tune LLMTune accepted."""

    job_id: str
    status: str | None
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A fine-tune as LLMTune reports it now; `artifact` is the trained model, once there."""

    job_id: str
    status: str | None
    progress: float | None
    metrics: dict[str, Any] | None
    error: str | None
    artifact: str | None
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """One completion."""

    text: str
    tokens: int | None
    model: str | None
    latency_ms: float | None
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BatchAccepted:
    """LLMTune's answer to a batch: per-item results and per-item errors apart, if any."""

    batch_id: str | None
    status: str | None
    summary: dict[str, Any] | None
    results: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    raw: dict[str, Any]


def read_job_id(body: Mapping[str, Any]) -> str | None:
    """The job id of a submission answer (`jobId`, `job_id`, `id`, top level or nested)."""
    for key in ("jobId", "job_id", "id"):
        value = _lookup(body, key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def read_submission(body: Mapping[str, Any]) -> SubmittedJob | None:
    """A submission answer; None when it names no job id."""
    job_id = read_job_id(body)
    if job_id is None:
        return None
    return SubmittedJob(job_id=job_id, status=_lookup_str(body, "status"), raw=dict(body))


def read_job_status(body: dict[str, Any], *, job_id: str) -> JobStatus:
    """A status answer; `job_id` (the one asked for) stands in when the answer names none."""
    metrics = _lookup(body, "metrics")
    return JobStatus(
        job_id=read_job_id(body) or job_id,
        status=_lookup_str(body, "status"),
        progress=_number(_lookup(body, "progress")),
        metrics=metrics if isinstance(metrics, dict) else None,
        error=_job_error(_lookup(body, "error")),
        artifact=_lookup_str(body, "artifact", "modelId", "model_id", "fineTunedModel"),
        raw=body,
    )


def read_inference(body: dict[str, Any]) -> InferenceResult | None:
    """A completion in LLMTune's shape (`text`, `tokens`) or OpenAI's (`choices`, `usage`);
    None when there is no text."""
    text = _completion_text(body)
    if text is None:
        return None
    tokens = _lookup(body, "tokens")
    if not _is_int(tokens):
        usage = _lookup(body, "usage")
        if isinstance(usage, dict):
            tokens = usage.get("total_tokens", usage.get("totalTokens"))
    return InferenceResult(
        text=text,
        tokens=tokens if _is_int(tokens) else None,
        model=_lookup_str(body, "model"),
        latency_ms=_number(_lookup(body, "latency", "latencyMs", "latency_ms")),
        raw=body,
    )


def read_batch(body: dict[str, Any]) -> BatchAccepted:
    """A batch answer; items carrying an `error` go to `errors`, the rest to `results`."""
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    items = _lookup(body, "results", "responses")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            results.append({"value": item})
        elif item.get("error") is not None:
            errors.append(item)
        else:
            results.append(item)
    failed = _lookup(body, "errors")
    for item in failed if isinstance(failed, list) else []:
        errors.append(item if isinstance(item, dict) else {"error": item})
    summary = _lookup(body, "summary")
    return BatchAccepted(
        batch_id=_lookup_str(body, "batchId", "batch_id", "id"),
        status=_lookup_str(body, "status"),
        summary=summary if isinstance(summary, dict) else None,
        results=results,
        errors=errors,
        raw=body,
    )


def _completion_text(body: dict[str, Any]) -> str | None:
    text = _lookup(body, "text")
    if isinstance(text, str):
        return text
    choices = _lookup(body, "choices")
    if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
        return None
    first = choices[0]
    message = first.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    text = first.get("text")
    return text if isinstance(text, str) else None


def _job_error(value: object) -> str | None:
    """A job's error: a string, or an object (type undocumented) read for its message."""
    if isinstance(value, dict):
        message = value.get("message")
        return message if isinstance(message, str) and message else orjson.dumps(value).decode()
    return _string(value)


def _lookup(body: Mapping[str, Any], *keys: str) -> Any:
    """The first non-null value under one of `keys`, at the top level, then in `data`/`job`."""
    nested = [body[name] for name in _CONTAINERS if isinstance(body.get(name), dict)]
    for key in keys:
        for container in (body, *nested):
            if container.get(key) is not None:
                return container[key]
    return None


def _lookup_str(body: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = _string(_lookup(body, key))
        if value is not None:
            return value
    return None


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: object) -> float | None:
    """A finite number, from JSON numbers or strings like "42" and "42.5%"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip().removesuffix("%"))
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
