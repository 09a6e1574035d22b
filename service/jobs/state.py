"""The job state machine: statuses only move forward. Pure.

`submitted < pending < running < completed | failed < deployed`. `completed` and `failed` share a
rank, so whichever arrives first wins; a late or out-of-order event only fills timestamps. The
store applies the rule in SQL (`UPDATE … WHERE rank(status) < :new`), built from `RANK`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Status = Literal["submitted", "pending", "running", "completed", "failed", "deployed"]
STATUSES: tuple[Status, ...] = get_args(Status)

RANK: dict[str, int] = {
    "submitted": 0,
    "pending": 1,
    "running": 2,
    "completed": 3,
    "failed": 3,
    "deployed": 4,
}

TimestampField = Literal["started_at", "finished_at", "deployed_at"]


@dataclass(frozen=True, slots=True)
class Transition:
    """What one lifecycle event asks of its job."""

    status: Status
    timestamp_field: TimestampField


_BY_EVENT: dict[str, Transition] = {
    "training.started": Transition("running", "started_at"),
    "training.completed": Transition("completed", "finished_at"),
    "training.failed": Transition("failed", "finished_at"),
    "model.deployed": Transition("deployed", "deployed_at"),
}


def transition_for(event_type: str) -> Transition | None:
    """The transition an event type drives, or None when it does not touch jobs."""
    return _BY_EVENT.get(event_type)
