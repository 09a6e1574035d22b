"""One fake fine-tune job's life as plain data: create, step forward, describe. Pure.

pending → training (`training.started`) → completed (`training.completed`) → deployed
(`model.deployed`); a job whose dataset names "fail" ends in `training.failed` instead of
completing. No clock and no I/O here: times come in as arguments, bodies go out as dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from service.timestamps import rfc3339

Stage = Literal["pending", "training", "completed", "deployed", "failed"]
Status = Literal["pending", "training", "completed", "failed"]

# (stage, fails) -> (next stage, the event announcing it). Absent: the job is finished.
NEXT: dict[tuple[Stage, bool], tuple[Stage, str]] = {
    ("pending", False): ("training", "training.started"),
    ("pending", True): ("training", "training.started"),
    ("training", False): ("completed", "training.completed"),
    ("training", True): ("failed", "training.failed"),
    ("completed", False): ("deployed", "model.deployed"),
}
# The public status vocabulary (FW) has no "deployed": a deployed job stays "completed".
STATUS: dict[Stage, Status] = {
    "pending": "pending",
    "training": "training",
    "completed": "completed",
    "deployed": "completed",
    "failed": "failed",
}
PROGRESS: dict[Stage, int] = {
    "pending": 0,
    "training": 50,
    "completed": 100,
    "deployed": 100,
    "failed": 50,
}
LOSS = 1.12
TOKENS = 3_250_000
PROVIDER = "io.net"


@dataclass(frozen=True, slots=True)
class Job:
    """A submitted fine-tune job and where it is in its life."""

    job_id: str
    base_model: str
    dataset: str
    created_at: datetime
    webhook_url: str | None = None
    training_method: str = "sft"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    stage: Stage = "pending"
    # When the clock moves the job on by itself; None: only `POST /_fake/advance` does.
    next_at: datetime | None = None

    @property
    def fails(self) -> bool:
        """True when the job is scripted to end in `training.failed`."""
        return "fail" in self.dataset.lower()

    @property
    def artifact(self) -> str:
        """The trained model's id, once training completed."""
        return f"ft:{self.base_model}:{self.job_id}"

    @property
    def deployment_id(self) -> str:
        """The deployment's id, once deployed."""
        return f"deploy-{self.job_id}"

    @property
    def finished(self) -> bool:
        """True when no further step exists."""
        return (self.stage, self.fails) not in NEXT


@dataclass(frozen=True, slots=True)
class Step:
    """One transition: the job after it, and the event and `data` its webhook announces."""

    job: Job
    event: str
    data: dict[str, Any]


def next_due(now: datetime, step_seconds: float) -> datetime | None:
    """When a job touched at `now` moves on by itself; None when stepping is manual (<= 0)."""
    return now + timedelta(seconds=step_seconds) if step_seconds > 0 else None


def is_due(job: Job, now: datetime) -> bool:
    """True when the clock says `job` should take its next step."""
    return not job.finished and job.next_at is not None and job.next_at <= now


def advance(job: Job, now: datetime, step_seconds: float) -> Step | None:
    """Take `job` one step forward at `now`; None when it is finished."""
    found = NEXT.get((job.stage, job.fails))
    if found is None:
        return None
    stage, event = found
    moved = replace(job, stage=stage)
    moved = replace(moved, next_at=None if moved.finished else next_due(now, step_seconds))
    return Step(job=moved, event=event, data=event_data(moved, event))


def metrics_of(job: Job) -> dict[str, Any]:
    """Training metrics, known once training completed."""
    return {"loss": LOSS, "tokens": TOKENS} if job.stage in ("completed", "deployed") else {}


def error_of(job: Job) -> str | None:
    """The failure message of a failed job."""
    if job.stage != "failed":
        return None
    return f"training failed: dataset {job.dataset!r} could not be used (fake LLMTune)"


def event_data(job: Job, event: str) -> dict[str, Any]:
    """W3 `data` of `event`: `jobId` and `modelName` always, then what the event tells."""
    data: dict[str, Any] = {"jobId": job.job_id, "modelName": job.base_model}
    if event == "training.started":
        data["provider"] = PROVIDER
    elif event == "training.completed":
        data |= {"artifact": job.artifact, "metrics": metrics_of(job)}
    elif event == "training.failed":
        data["error"] = error_of(job)
    elif event == "model.deployed":
        data |= {
            "deploymentId": job.deployment_id,
            "modelId": job.artifact,
            "artifact": job.artifact,
        }
    return data


def iso_millis(now: datetime) -> str:
    """JavaScript `toISOString()` form, as W3 stamps `timestamp`: `2025-11-08T14:22:31.000Z`."""
    return rfc3339(now, digits=3)


def w3_body(event: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The W3 envelope: `{"event", "data", "timestamp"}`."""
    return {"event": event, "data": data, "timestamp": iso_millis(now)}


def job_view(job: Job) -> dict[str, Any]:
    """The `GET /v1/fine-tune/{jobId}` answer."""
    done = job.stage in ("completed", "deployed")
    return {
        "jobId": job.job_id,
        "status": STATUS[job.stage],
        "progress": PROGRESS[job.stage],
        "metrics": metrics_of(job),
        "error": error_of(job),
        "artifact": job.artifact if done else None,
        "baseModel": job.base_model,
        "trainingMethod": job.training_method,
        "deploymentId": job.deployment_id if job.stage == "deployed" else None,
    }
