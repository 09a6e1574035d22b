"""The forward-only job state machine."""

from __future__ import annotations

import pytest

from service.jobs.state import advances, transition_for


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        pytest.param("submitted", "running", True, id="submitted-to-running"),
        pytest.param("pending", "running", True, id="pending-to-running"),
        pytest.param("running", "completed", True, id="running-to-completed"),
        pytest.param("running", "failed", True, id="running-to-failed"),
        pytest.param("completed", "deployed", True, id="completed-to-deployed"),
        pytest.param("completed", "failed", False, id="completed-is-terminal"),
        pytest.param("failed", "completed", False, id="failed-is-terminal"),
        pytest.param("completed", "running", False, id="no-regress-to-running"),
        pytest.param("deployed", "completed", False, id="no-regress-from-deployed"),
        pytest.param("running", "running", False, id="same-status"),
        pytest.param("mystery", "pending", True, id="unknown-current-ranks-lowest"),
        pytest.param("running", "mystery", False, id="unknown-new-never-advances"),
    ],
)
def test_advances(current: str, new: str, expected: bool) -> None:
    """Only a strictly higher rank moves a job."""
    assert advances(current, new) is expected


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
