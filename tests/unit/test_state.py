"""The forward-only job state machine, and the move each event asks of its job."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from service.events import Event
from service.job_status import JOB_TIMES, RANK
from service.jobs.state import job_move, transition_for

RECEIVED = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)
OCCURRED = datetime(2025, 11, 8, 13, 59, tzinfo=UTC)
EVENT = Event(
    type="training.completed",
    dedup_key="id:evt_1",
    external_id="evt_1",
    job_id="ft-1",
    model="base-7b",
    artifact="s3://out",
    deployment_id=None,
    metrics={"loss": 0.1},
    error=None,
    occurred_at=OCCURRED,
    is_test=False,
)


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


class TestJobMove:
    @pytest.mark.parametrize(
        ("event_type", "status", "rank", "stamped"),
        [
            pytest.param("training.started", "running", 2, "started_at", id="started"),
            pytest.param("training.completed", "completed", 3, "finished_at", id="completed"),
            pytest.param("training.failed", "failed", 3, "finished_at", id="failed"),
            pytest.param("model.deployed", "deployed", 4, "deployed_at", id="deployed"),
        ],
    )
    def test_lifecycle_event_moves_its_job(
        self, event_type: str, status: str, rank: int, stamped: str
    ) -> None:
        """A lifecycle event asks its job for its status at that status's rank, stamping one
        timestamp (when it happened) and leaving the others empty."""
        move = job_move(replace(EVENT, type=event_type), RECEIVED)
        assert move is not None
        assert (move.job_id, move.status, move.rank) == ("ft-1", status, rank)
        assert move.times == {name: OCCURRED if name == stamped else None for name in JOB_TIMES}

    def test_fields_come_from_the_event(self) -> None:
        """The job fields the move sets (or fills) are the event's, empty ones included."""
        move = job_move(EVENT, RECEIVED)
        assert move is not None
        assert move.fields == {
            "base_model": "base-7b",
            "artifact": "s3://out",
            "deployment_id": None,
            "metrics": {"loss": 0.1},
            "error": None,
        }

    def test_arrival_time_stamps_an_event_without_one(self) -> None:
        """An event that does not say when it happened is stamped with its arrival."""
        move = job_move(replace(EVENT, occurred_at=None), RECEIVED)
        assert move is not None
        assert move.times["finished_at"] == RECEIVED

    @pytest.mark.parametrize(
        "event",
        [
            pytest.param(replace(EVENT, job_id=None), id="no-job"),
            pytest.param(replace(EVENT, is_test=True), id="test-event"),
            pytest.param(replace(EVENT, type="deployment.created"), id="not-lifecycle"),
            pytest.param(replace(EVENT, type="usage.threshold_reached", job_id=None), id="usage"),
        ],
    )
    def test_no_move(self, event: Event) -> None:
        """Events with no job, test events and non-lifecycle events move no job."""
        assert job_move(event, RECEIVED) is None

    # (status already stored, event arriving) -> does the store's `rank(status) < :rank` pass
    @pytest.mark.parametrize(
        ("stored", "event_type", "moves"),
        [
            pytest.param("submitted", "training.started", True, id="accepted-then-started"),
            pytest.param("running", "training.completed", True, id="in-order"),
            pytest.param("completed", "model.deployed", True, id="deploy-after-completed"),
            pytest.param("completed", "training.started", False, id="late-start"),
            pytest.param("deployed", "training.completed", False, id="deploy-first"),
            pytest.param("completed", "training.failed", False, id="first-terminal-wins"),
            pytest.param("failed", "training.completed", False, id="failed-first-wins"),
            pytest.param("running", "training.started", False, id="duplicate-start"),
            pytest.param("deployed", "model.deployed", False, id="duplicate-deploy"),
        ],
    )
    def test_rank_guards_out_of_order_and_duplicates(
        self, stored: str, event_type: str, moves: bool
    ) -> None:
        """The rank a move carries passes the store's guard only against a lower stored
        status: a late, repeated or second terminal event fills timestamps and moves nothing."""
        move = job_move(replace(EVENT, type=event_type), RECEIVED)
        assert move is not None
        assert (RANK[stored] < move.rank) is moves
