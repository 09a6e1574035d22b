"""The forward-only job state machine."""

from __future__ import annotations

import pytest

from service.jobs.state import RANK, transition_for


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("submitted", "pending"),
        ("pending", "running"),
        ("running", "completed"),
        ("running", "failed"),
        ("completed", "deployed"),
        ("failed", "deployed"),
    ],
)
def test_ranks_move_forward(lower: str, higher: str) -> None:
    """Each later status outranks the earlier one, so the store's `rank < :new` moves it."""
    assert RANK[lower] < RANK[higher]


def test_completed_and_failed_share_a_rank() -> None:
    """Both are terminal for training: whichever is stored first, the other cannot replace it."""
    assert RANK["completed"] == RANK["failed"]


@pytest.mark.parametrize(
    ("event", "status", "field"),
    [
        ("training.started", "running", "started_at"),
        ("training.completed", "completed", "finished_at"),
        ("training.failed", "failed", "finished_at"),
        ("model.deployed", "deployed", "deployed_at"),
    ],
)
def test_lifecycle_events_map_to_transitions(event: str, status: str, field: str) -> None:
    """Each lifecycle event names its status and the timestamp it fills."""
    transition = transition_for(event)
    assert transition is not None
    assert (transition.status, transition.timestamp_field) == (status, field)


@pytest.mark.parametrize(
    "event", ["deployment.created", "usage.threshold_reached", "training.cancelled", "unknown"]
)
def test_other_events_do_not_touch_jobs(event: str) -> None:
    """Events without a job meaning give no transition."""
    assert transition_for(event) is None
