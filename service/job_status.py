"""Where a job stands, and the move one event asks of it. Pure, and spelled once here so the
state machine (`jobs/state.py`), the store's forward-only SQL, the admin API and the command
line agree.

`submitted < pending < running < completed | failed < deployed`: a job only moves to a status
of higher rank. The store applies that in SQL (`UPDATE … WHERE rank(status) < :rank`), with the
target's rank bound from the `JobMove` that ingest decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

JobStatus = Literal["submitted", "pending", "running", "completed", "failed", "deployed"]
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)

RANK: Mapping[str, int] = {
    "submitted": 0,
    "pending": 1,
    "running": 2,
    "completed": 3,
    "failed": 3,
    "deployed": 4,
}

# The job columns an event brings: set when its move wins, else only filled where still empty.
JOB_FIELDS = ("base_model", "artifact", "deployment_id", "metrics", "error")
JobTime = Literal["started_at", "finished_at", "deployed_at"]
# The timestamps a move may fill (never overwrite).
JOB_TIMES: tuple[JobTime, ...] = get_args(JobTime)


@dataclass(frozen=True, slots=True)
class JobMove:
    """What one new event asks of its job: create it, or move it forward to `status` (of rank
    `rank`), with `fields` (keyed by `JOB_FIELDS`) and `times` (keyed by `JOB_TIMES`)."""

    job_id: str
    status: JobStatus
    rank: int
    fields: Mapping[str, Any]
    times: Mapping[str, datetime | None]
