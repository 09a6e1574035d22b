"""The small things handlers need from the rest of the service, as protocols: a durable memory,
the inference runs, a way to emit an event. Handlers depend on these; the store implements the
first two and the composition root builds the third, so neither floor imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from service.events import DEFAULT_WORKSPACE, Source


class MemoryUnavailable(Exception):
    """The handler memory cannot be read or written right now; the attempt should be retried."""


class HandlerMemory(Protocol):
    """A little durable memory for handlers, shared by every worker process (e.g. which Slack
    thread a job's messages go to)."""

    async def recall(self, scope: str, key: str) -> str | None:
        """The value remembered under (scope, key), or None; `MemoryUnavailable` if unsure."""
        ...

    async def remember(self, scope: str, key: str, value: str) -> str:
        """Keep `value` unless one is already kept; return the kept one."""
        ...


@dataclass(frozen=True, slots=True)
class InferenceRun:
    """One prompt of a follow-up inference, as the `inference` handler records it."""

    delivery_id: str
    prompt_index: int
    event_id: str
    job_id: str | None
    route: str
    model: str
    prompt: str
    status: str  # "succeeded" | "failed"
    output: str | None = None
    tokens: int | None = None
    latency_ms: float | None = None
    error: str | None = None


class InferenceRuns(Protocol):
    """Where inference runs are kept (the store), so a retried delivery redoes only what failed."""

    async def of_delivery(self, delivery_id: str) -> dict[int, InferenceRun]:
        """The runs already recorded for this delivery, by prompt index."""
        ...

    async def record(self, run: InferenceRun) -> None:
        """Keep `run`, replacing an earlier run of the same delivery and prompt."""
        ...


@dataclass(frozen=True, slots=True)
class EmittedEvent:
    """What emitting came to: the stored event's id, and whether it was already stored."""

    event_id: str
    duplicate: bool


class EmitEvent(Protocol):
    """Stores an event the service itself produced (through the one ingest service, trusted) and
    routes it like any other. Handlers, the worker and the reconciler get one from the
    composition root instead of importing ingest, which sits above them."""

    async def __call__(
        self, body: bytes, *, source: Source = "internal", workspace: str = DEFAULT_WORKSPACE
    ) -> EmittedEvent: ...
