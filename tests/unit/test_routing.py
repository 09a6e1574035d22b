"""Subscription matching by event-name patterns."""

from __future__ import annotations

import pytest

from service.routing import DEFAULT_ROUTES, Subscription, matches, routes_for

SLACK = Subscription(name="slack", handler="slack", events=("training.*", "model.deployed"))


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("training.started", True),
        ("training.completed", True),
        ("model.deployed", True),
        ("model.deployed.extra", False),
        ("deployment.created", False),
        ("Training.started", False),
        ("unknown", False),
    ],
)
def test_patterns(event: str, expected: bool) -> None:
    """Globs match whole, case-sensitive event names."""
    assert matches(SLACK, event) is expected


def test_default_route_takes_every_event() -> None:
    """Until routes are configured, everything goes to the log route."""
    assert [r.name for r in routes_for("anything.at.all", DEFAULT_ROUTES)] == ["log"]


def test_routes_keep_configuration_order() -> None:
    """Several matching routes are returned in the order configured."""
    routes = [SLACK, *DEFAULT_ROUTES]
    assert [r.name for r in routes_for("training.failed", routes)] == ["slack", "log"]
    assert [r.name for r in routes_for("usage.threshold_reached", routes)] == ["log"]
