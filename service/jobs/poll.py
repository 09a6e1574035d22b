"""What a poll of `GET /fine-tune/{jobId}` means for a job. Pure.

LLMTune's status words differ between doc versions (`pending`, `training`, `running`,
`completed`, `failed`, and others nobody has documented), so each is read into the lifecycle
event a webhook would have brought. A poll becomes an event only when it moves the job forward;
its body has the shape of a W3 webhook, so its dedup key (`sem:<event>:<jobId>`) is the one the
lost webhook would have had, and a webhook arriving later is counted as its duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from service.job_status import RANK
from service.timestamps import rfc3339

_EVENT_OF_STATUS = {
    "training": "training.started",
    "running": "training.started",
    "in_progress": "training.started",
    "started": "training.started",
    "completed": "training.completed",
    "succeeded": "training.completed",
    "success": "training.completed",
    "failed": "training.failed",
    "error": "training.failed",
    "cancelled": "training.failed",
    "canceled": "training.failed",
    "deployed": "model.deployed",
}
_STATUS_OF_EVENT = {
    "training.started": "running",
    "training.completed": "completed",
    "training.failed": "failed",
    "model.deployed": "deployed",
}


@dataclass(frozen=True, slots=True)
class Polled:
    """What LLMTune said about a job."""

    job_id: str
    status: str | None
    artifact: str | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None


def event_for_poll(polled: Polled, current_status: str) -> str | None:
    """The lifecycle event the polled status stands for, if it moves the job forward."""
    event = _EVENT_OF_STATUS.get((polled.status or "").strip().lower())
    if event is None:
        return None
    if RANK[_STATUS_OF_EVENT[event]] <= RANK.get(current_status, -1):
        return None
    return event


def poll_body(polled: Polled, event: str, now: datetime) -> bytes:
    """A W3-shaped body for the event a poll found (stored with source `poll`)."""
    data: dict[str, Any] = {"jobId": polled.job_id, "status": polled.status}
    if polled.artifact is not None:
        data["artifact"] = polled.artifact
    if polled.metrics:
        data["metrics"] = polled.metrics
    if polled.error is not None:
        data["error"] = polled.error
    return orjson.dumps({"event": event, "data": data, "timestamp": rfc3339(now)})


def next_poll_delay(poll_after: timedelta, quiet_polls: int, *, cap: timedelta) -> timedelta:
    """Back off while polls find nothing new: `poll_after`, doubled per quiet poll, capped."""
    return min(poll_after * (1 << min(quiet_polls, 16)), cap)
