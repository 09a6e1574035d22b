"""What ingest decides a new event does: its job's move and the routes that get a delivery."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.events import Event
from service.ingest import Decider
from service.routing import DEFAULT_ROUTES, Subscription

AT = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)
SLACK = Subscription("slack", "slack", ("training.*",))
DEPLOYS = Subscription("deploys", "http", ("model.deployed",), max_attempts=3)
EVERYTHING = Subscription("log", "log", ("*",))
OFF = Subscription("off", "log", ("*",), enabled=False)
TEAM_B = Subscription("team-b", "slack", ("*",), workspaces=("team-b",))
ROUTES = (SLACK, DEPLOYS, OFF, TEAM_B, EVERYTHING)


def event(event_type: str, job_id: str | None = "ft-1", *, is_test: bool = False) -> Event:
    return Event(
        type=event_type,
        dedup_key=f"sem:{event_type}:{job_id}",
        external_id=None,
        job_id=job_id,
        model=None,
        artifact=None,
        deployment_id=None,
        metrics=None,
        error=None,
        occurred_at=None,
        is_test=is_test,
    )


@pytest.mark.parametrize(
    ("event_type", "workspace", "targets"),
    [
        pytest.param("training.failed", "default", ["slack", "log"], id="glob-and-star"),
        pytest.param("model.deployed", "default", ["deploys", "log"], id="exact-name"),
        pytest.param("model.deployed.v2", "default", ["log"], id="exact-is-whole"),
        pytest.param("Training.failed", "default", ["log"], id="case-sensitive"),
        pytest.param("usage.threshold_reached", "team-b", ["team-b", "log"], id="workspace"),
        pytest.param("deployment.created", "default", ["log"], id="disabled-skipped"),
    ],
)
def test_targets_are_the_matching_routes_in_order(
    event_type: str, workspace: str, targets: list[str]
) -> None:
    """Enabled routes whose glob matches the event name, for its workspace, in file order."""
    decision = Decider(ROUTES).decide(event(event_type), received_at=AT, workspace=workspace)
    assert [route.name for route in decision.targets] == targets


def test_targets_carry_their_route() -> None:
    """A target is the route itself: its handler and attempt budget go on the delivery."""
    decision = Decider(ROUTES).decide(event("model.deployed"), received_at=AT, workspace="default")
    assert decision.targets[0] == DEPLOYS


def test_no_routes_no_targets() -> None:
    """With no routes at all, an event is stored and goes nowhere."""
    decision = Decider(()).decide(event("training.failed"), received_at=AT, workspace="default")
    assert decision.targets == ()


@pytest.mark.parametrize(
    ("new", "status"),
    [
        pytest.param(event("training.started"), "running", id="lifecycle"),
        pytest.param(event("model.deployed"), "deployed", id="deployed"),
        pytest.param(event("training.started", job_id=None), None, id="no-job"),
        pytest.param(event("training.started", is_test=True), None, id="test-event"),
        pytest.param(event("deployment.created"), None, id="not-lifecycle"),
    ],
)
def test_job_move_is_decided_beside_the_targets(new: Event, status: str | None) -> None:
    """The decision carries the job's move (None when the event moves none) and still fans out
    an event that moves no job."""
    decision = Decider(DEFAULT_ROUTES).decide(new, received_at=AT, workspace="default")
    assert (decision.job.status if decision.job else None) == status
    assert [route.name for route in decision.targets] == ["log"]


def test_remembered_targets_stay_right() -> None:
    """Deciding again, for many more event names than are remembered and per workspace, gives
    the same targets as the first time."""
    routes = (
        Subscription("all", "log", ("t.*",)),
        Subscription("seven", "log", ("t.7",)),
        Subscription("team-b", "log", ("*",), workspaces=("team-b",)),
    )
    decider = Decider(routes)
    for _ in range(2):
        for n in range(1500):
            for workspace in ("default", "team-b"):
                decision = decider.decide(event(f"t.{n}"), received_at=AT, workspace=workspace)
                expected = ["all"] + ["seven"] * (n == 7) + ["team-b"] * (workspace == "team-b")
                assert [route.name for route in decision.targets] == expected
