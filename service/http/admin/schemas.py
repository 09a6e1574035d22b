"""camelCase JSON views of what the store answers, for the admin API. Times are RFC 3339 UTC
with `Z`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from service.delivery_status import UNFINISHED
from service.store.deliveries import StoredAttempt, StoredDelivery
from service.store.events import OpenedEvent, StoredEvent
from service.store.inference_runs import JobRun
from service.store.jobs import StoredJob
from service.timestamps import rfc3339
from service.webhooks.verify import SIGNATURE_HEADERS

REDACTED = "[redacted]"


def event_summary(row: StoredEvent) -> dict[str, Any]:
    """An event as listed."""
    return {
        "id": row.id,
        "type": row.type,
        "source": row.source,
        "workspace": row.workspace,
        "jobId": row.job_id,
        "externalId": row.external_id,
        "dedupKey": row.dedup_key,
        "receivedAt": rfc3339(row.received_at),
        "occurredAt": rfc3339(row.occurred_at),
        "verified": row.verified,
        "isTest": row.is_test,
        "duplicateCount": row.duplicate_count,
        "lastDuplicateAt": rfc3339(row.last_duplicate_at),
        "bodyBytes": row.body_bytes,
    }


def redacted_headers(headers: list[list[str]]) -> list[dict[str, str]]:
    """Stored headers with signature values hidden."""
    return [
        {"name": name, "value": REDACTED if name.lower() in SIGNATURE_HEADERS else value}
        for name, value in headers
    ]


def event_detail(opened: OpenedEvent, deliveries: list[StoredDelivery]) -> dict[str, Any]:
    """An event with its payload, exact raw body, redacted headers and deliveries."""
    return {
        **event_summary(opened.event),
        # Only bodies that parsed as JSON objects are stored, so both views always exist.
        "payload": orjson.loads(opened.raw_body),
        "rawBody": opened.raw_body.decode("utf-8"),
        "headers": redacted_headers(opened.headers),
        "deliveries": [delivery_view(d) for d in deliveries],
    }


def delivery_view(row: StoredDelivery) -> dict[str, Any]:
    """A delivery of an event to a route."""
    return {
        "id": row.id,
        "eventId": row.event_id,
        "route": row.route,
        "handler": row.handler,
        "jobId": row.job_id,
        "status": row.status,
        "attempts": row.attempts,
        # The column is never NULL (the worker's claim index wants a time), but a finished
        # delivery has no next attempt.
        "nextAttemptAt": rfc3339(row.next_attempt_at) if row.status in UNFINISHED else None,
        "lastError": row.last_error,
        "createdAt": rfc3339(row.created_at),
        "updatedAt": rfc3339(row.updated_at),
    }


def attempt_view(row: StoredAttempt) -> dict[str, Any]:
    """One attempt of a delivery."""
    return {
        "number": row.number,
        "startedAt": rfc3339(row.started_at),
        "durationMs": row.duration_ms,
        "outcome": row.outcome,
        "detail": row.detail,
    }


def job_summary(row: StoredJob) -> dict[str, Any]:
    """A job as listed."""
    return {
        "id": row.id,
        "llmtuneJobId": row.llmtune_job_id,
        "status": row.status,
        "baseModel": row.base_model,
        "artifact": row.artifact,
        "deploymentId": row.deployment_id,
        "metrics": row.metrics,
        "error": row.error,
        "dataset": row.dataset,
        "trainingMethod": row.training_method,
        "hyperparameters": row.params,
        "idempotencyKey": row.idempotency_key,
        "submitError": row.submit_error,
        "submittedAt": rfc3339(row.submitted_at),
        "startedAt": rfc3339(row.started_at),
        "finishedAt": rfc3339(row.finished_at),
        "deployedAt": rfc3339(row.deployed_at),
        "lastPolledAt": rfc3339(row.last_polled_at),
        "createdAt": rfc3339(row.created_at),
        "updatedAt": rfc3339(row.updated_at),
    }


def inference_run_view(stored: JobRun) -> dict[str, Any]:
    """One follow-up inference run (the output in full: it is what the operator came to read)."""
    run = stored.run
    return {
        "id": stored.id,
        "eventId": run.event_id,
        "deliveryId": run.delivery_id,
        "route": run.route,
        "model": run.model,
        "promptIndex": run.prompt_index,
        "prompt": run.prompt,
        "status": run.status,
        "output": run.output,
        "tokens": run.tokens,
        "latencyMs": run.latency_ms,
        "error": run.error,
        "createdAt": rfc3339(stored.created_at),
    }


def job_timeline(
    job: StoredJob,
    events: Sequence[StoredEvent],
    deliveries: Sequence[StoredDelivery],
    runs: Sequence[JobRun],
) -> list[dict[str, Any]]:
    """What happened to a job, oldest first, one line each: its submission, every event,
    every delivery (by when it last changed) and every inference run."""
    entries: list[tuple[datetime, int, dict[str, Any]]] = []
    if job.submitted_at is not None:
        entries.append((job.submitted_at, 0, {"kind": "submitted", "jobId": job.id}))
    for event in events:
        entries.append(
            (
                event.received_at,
                1,
                {"kind": "event", "eventId": event.id, "type": event.type, "source": event.source},
            )
        )
    for delivery in deliveries:
        entries.append(
            (
                delivery.updated_at,
                2,
                {
                    "kind": "delivery",
                    "deliveryId": delivery.id,
                    "eventId": delivery.event_id,
                    "route": delivery.route,
                    "status": delivery.status,
                },
            )
        )
    for stored in runs:
        run = stored.run
        entries.append(
            (
                stored.created_at,
                3,
                {"kind": "inference", "runId": stored.id, "model": run.model, "status": run.status},
            )
        )
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    return [{"at": rfc3339(at), **entry} for at, _, entry in entries]
