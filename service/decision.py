"""What storing a new event does besides its own row. Pure values.

Ingest decides, per event, which job it moves and which routes get a delivery (`Decision`); the
store's writer only turns that into statements, and applies it to events that are new (not to
repeats, nor to replays of purged ones).
"""

from __future__ import annotations

from dataclasses import dataclass

from service.job_status import JobMove
from service.routing import Subscription


@dataclass(frozen=True, slots=True)
class Decision:
    """The job move of one event (None when it touches no job) and its fan-out targets, in
    route order."""

    job: JobMove | None
    targets: tuple[Subscription, ...]
