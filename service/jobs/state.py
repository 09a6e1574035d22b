"""The job state machine: statuses only move forward. Pure.

`completed` and `failed` share a rank (`service/job_status.py`), so whichever arrives first
wins; a late or out-of-order event only fills timestamps. `job_move` says what one event asks
of its job; the store applies it in SQL, forward only, so racing writers agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.events import Event
from service.job_status import JOB_TIMES, RANK, JobMove, JobStatus, JobTime


@dataclass(frozen=True, slots=True)
class Transition:
    """What one lifecycle event asks of its job."""

    status: JobStatus
    timestamp_field: JobTime


_BY_EVENT: dict[str, Transition] = {
    "training.started": Transition("running", "started_at"),
    "training.completed": Transition("completed", "finished_at"),
    "training.failed": Transition("failed", "finished_at"),
    "model.deployed": Transition("deployed", "deployed_at"),
}


def transition_for(event_type: str) -> Transition | None:
    """The transition an event type drives, or None when it does not touch jobs."""
    return _BY_EVENT.get(event_type)


def job_move(event: Event, received_at: datetime) -> JobMove | None:
    """The move `event` asks of its job, or None (no job, a test event, or not a lifecycle
    event). Its timestamp is when the event happened, else when it arrived."""
    transition = _BY_EVENT.get(event.type)
    if transition is None or event.job_id is None or event.is_test:
        return None
    when = event.occurred_at or received_at
    return JobMove(
        job_id=event.job_id,
        status=transition.status,
        rank=RANK[transition.status],
        fields={
            "base_model": event.model,
            "artifact": event.artifact,
            "deployment_id": event.deployment_id,
            "metrics": event.metrics,
            "error": event.error,
        },
        times={name: when if name == transition.timestamp_field else None for name in JOB_TIMES},
    )
