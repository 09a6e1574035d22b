"""The one delivery-row builder, and pages turned into plain values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.delivery_status import DELIVERY_STATUSES, RETRYABLE, UNDER_WAY, UNFINISHED
from service.routing import Subscription
from service.store.deliveries import new_delivery
from service.store.paging import Page

AT = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)
ROUTE = Subscription(name="ops", handler="slack", events=("*",), max_attempts=4)


@pytest.mark.parametrize(
    ("job_id", "trace_parent"),
    [
        pytest.param(
            "job-1", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", id="traced"
        ),
        pytest.param(None, None, id="replayed"),
    ],
)
def test_new_delivery_is_pending_and_due_at_once(
    job_id: str | None, trace_parent: str | None
) -> None:
    """A new delivery is pending with no attempts, due when made, under the route's budget."""
    row = new_delivery(
        event_id="evt_1", job_id=job_id, route=ROUTE, at=AT, trace_parent=trace_parent
    )
    assert row["id"].startswith("dlv_")
    assert {k: v for k, v in row.items() if k != "id"} == {
        "event_id": "evt_1",
        "route": "ops",
        "handler": "slack",
        "job_id": job_id,
        "status": "pending",
        "attempts": 0,
        "max_attempts": 4,
        "next_attempt_at": AT,
        "created_at": AT,
        "updated_at": AT,
        "trace_parent": trace_parent,
    }


def test_each_delivery_gets_its_own_id() -> None:
    """Two deliveries of one event to one route (a replay of a purged one) never share an id."""
    rows = [new_delivery(event_id="e", job_id=None, route=ROUTE, at=AT, trace_parent=None)]
    rows.append(new_delivery(event_id="e", job_id=None, route=ROUTE, at=AT, trace_parent=None))
    assert rows[0]["id"] != rows[1]["id"]


@pytest.mark.parametrize(
    ("group", "members"),
    [
        pytest.param(UNFINISHED, {"pending", "in_flight", "retrying"}, id="unfinished"),
        pytest.param(RETRYABLE, {"dead", "retrying"}, id="retryable"),
        pytest.param(UNDER_WAY, {"pending", "in_flight"}, id="under-way"),
    ],
)
def test_status_groups_are_statuses(group: tuple[str, ...], members: set[str]) -> None:
    """Each named group holds exactly these statuses, all of them known ones."""
    assert set(group) == members
    assert set(group) <= set(DELIVERY_STATUSES)


def test_page_map_keeps_the_cursor() -> None:
    """Turning a page's rows into values keeps their order and the next page's key."""
    page = Page(items=[1, 2, 3], next_key=(AT, "x"))
    assert page.map(str) == Page(items=["1", "2", "3"], next_key=(AT, "x"))
