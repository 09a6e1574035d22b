"""Strict admin query parameters (unknown, empty, repeated, malformed: 400 naming it), cursors
bound to their filters, several event types, time ranges, and the routes' declarations. Both
databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.clock import FakeClock
from service.http.admin import shapes
from service.http.admin.endpoint import AdminRoute
from service.http.admin.routes import ROUTES, operations
from tests.helpers import AUTH, make_settings, post_webhook, running_app, w3_body

T0 = datetime(2025, 11, 8, 12, 0, tzinfo=UTC)
PAST = "2020-01-01T00:00:00Z"
FUTURE = "2030-01-01T00:00:00Z"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def client(
    engine: AsyncEngine, db_url: str, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(db_url), engine, clock=clock) as client:
        yield client


async def seed(client: httpx.AsyncClient, clock: FakeClock, *types: str) -> list[str]:
    """One event per type (job-0, job-1, ...), a second apart; their ids, oldest first."""
    ids = []
    for index, event_type in enumerate(types):
        clock.advance(timedelta(seconds=1))
        response = await post_webhook(client, w3_body(event_type, f"job-{index}"))
        ids.append(response.json()["eventId"])
    return ids


async def get(client: httpx.AsyncClient, url: str) -> Any:
    """GET with the admin token; the JSON, after checking for 200."""
    response = await client.get(url, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


BAD_QUERIES = [
    # events
    ("/admin/events", "jobid=job-1", "jobid"),
    ("/admin/events", "foo=1", "foo"),
    ("/admin/events", "status=dead", "status"),
    ("/admin/events", "type=", "type"),
    ("/admin/events", "type=training.started,training.failed", "type"),
    ("/admin/events", "jobId=a&jobId=b", "jobId"),
    ("/admin/events", "limit=5&limit=6", "limit"),
    ("/admin/events", "limit=%C2%B2", "limit"),
    ("/admin/events", "test=yes", "test"),
    ("/admin/events", "duplicate=", "duplicate"),
    ("/admin/events", "since=yesterday", "since"),
    ("/admin/events", f"since={FUTURE}&until={PAST}", "until"),
    ("/admin/events", "cursor=garbage", "cursor"),
    # deliveries
    ("/admin/deliveries", "status=bogus", "status"),
    ("/admin/deliveries", "status=Dead", "status"),
    ("/admin/deliveries", "status=dead&status=pending", "status"),
    ("/admin/deliveries", "eventId=not-an-id", "eventId"),
    ("/admin/deliveries", "jobid=x", "jobid"),
    ("/admin/deliveries", "type=training.started", "type"),
    ("/admin/deliveries", "until=soon", "until"),
    ("/admin/deliveries", "limit=0", "limit"),
    # jobs
    ("/admin/jobs", "status=bogus", "status"),
    ("/admin/jobs", "status=dead", "status"),
    ("/admin/jobs", "jobId=job-1", "jobId"),
    ("/admin/jobs", "since=2025-13-01", "since"),
    ("/admin/jobs", "limit=201", "limit"),
    # rejections
    ("/admin/rejections", "reason=bogus", "reason"),
    ("/admin/rejections", "status=401", "status"),
    ("/admin/rejections", "since=nope", "since"),
    # routes without a list: any parameter is unknown
    ("/admin/events/evt_0123abcd", "expand=deliveries", "expand"),
    ("/admin/jobs/job_0123abcd", "limit=1", "limit"),
]


@pytest.mark.parametrize(
    ("path", "query", "parameter"),
    [pytest.param(path, query, name, id=f"{path}?{query}") for path, query, name in BAD_QUERIES],
)
async def test_bad_query_is_400_naming_the_parameter(
    client: httpx.AsyncClient, path: str, query: str, parameter: str
) -> None:
    """Every admin GET refuses a bad query with 400 INVALID_PARAMETER naming the parameter."""
    response = await client.get(f"{path}?{query}", headers=AUTH)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_PARAMETER"
    assert error["details"] == {"parameter": parameter}


@pytest.mark.parametrize(
    ("path", "query", "parameter"),
    [
        pytest.param("/admin/deliveries/retry", "limit=5", "limit", id="bulk-retry-limit"),
        pytest.param("/admin/deliveries/retry", "status=bogus", "status", id="bulk-retry-status"),
        pytest.param("/admin/test-event", "event=x", "event", id="test-event-query"),
    ],
)
async def test_bad_query_on_a_mutation_is_400(
    client: httpx.AsyncClient, path: str, query: str, parameter: str
) -> None:
    """Mutations are as strict: nothing runs when a parameter is wrong."""
    response = await client.post(f"{path}?{query}", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"parameter": parameter}


async def test_wrong_case_suggests_the_parameter(client: httpx.AsyncClient) -> None:
    """`jobid` is refused, and the message points at `jobId`."""
    response = await client.get("/admin/events?jobid=job-1", headers=AUTH)
    assert "did you mean jobId?" in response.json()["error"]["message"]


async def test_several_types_by_repetition(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """`type=a&type=b` lists events of either type, newest first."""
    await seed(client, clock, "training.started", "training.completed", "training.failed")
    body = await get(client, "/admin/events?type=training.started&type=training.failed")
    assert [item["jobId"] for item in body["items"]] == ["job-2", "job-0"]


class TestCursor:
    async def test_cursor_pages_on_with_the_same_filters(
        self, client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        """Same filters (types in any order, any limit) page on; no row is skipped."""
        await seed(client, clock, *["training.started", "training.failed"] * 3)
        first = await get(
            client, "/admin/events?type=training.started&type=training.failed&limit=2"
        )
        cursor = first["nextCursor"]
        rest = await get(
            client,
            f"/admin/events?type=training.failed&type=training.started&limit=10&cursor={cursor}",
        )
        seen = [item["jobId"] for item in first["items"] + rest["items"]]
        assert seen == [f"job-{index}" for index in range(5, -1, -1)]

    @pytest.mark.parametrize(
        "changed",
        [
            pytest.param("type=training.started", id="fewer-types"),
            pytest.param("type=training.started&type=training.failed&test=false", id="added"),
            pytest.param("type=training.started&type=model.deployed", id="other-type"),
        ],
    )
    async def test_cursor_with_changed_filters_is_400(
        self, client: httpx.AsyncClient, clock: FakeClock, changed: str
    ) -> None:
        """A cursor sent with other filters than its page's is refused, naming `cursor`."""
        await seed(client, clock, "training.started", "training.failed", "training.started")
        first = await get(
            client, "/admin/events?type=training.started&type=training.failed&limit=1"
        )
        response = await client.get(
            f"/admin/events?{changed}&cursor={first['nextCursor']}", headers=AUTH
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["details"] == {"parameter": "cursor"}
        assert "other filters" in error["message"]

    async def test_cursor_of_another_list_is_400(
        self, client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        """An events cursor means nothing to deliveries."""
        await seed(client, clock, "training.started", "training.failed")
        first = await get(client, "/admin/events?limit=1")
        response = await client.get(f"/admin/deliveries?cursor={first['nextCursor']}", headers=AUTH)
        assert response.json()["error"]["details"] == {"parameter": "cursor"}


class TestFilters:
    async def test_deliveries_by_time_job_and_event(
        self, client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        """Deliveries filter by since/until (when created), jobId and eventId."""
        ids = await seed(client, clock, "training.started", "training.failed")
        after_first = (T0 + timedelta(seconds=1, milliseconds=500)).isoformat()
        later = await get(client, f"/admin/deliveries?since={after_first.replace('+', '%2B')}")
        assert [item["eventId"] for item in later["items"]] == [ids[1]]
        assert (await get(client, f"/admin/deliveries?until={PAST}"))["items"] == []
        by_job = await get(client, "/admin/deliveries?jobId=job-0&status=pending")
        assert [item["eventId"] for item in by_job["items"]] == [ids[0]]
        by_event = await get(client, f"/admin/deliveries?eventId={ids[1]}&route=log")
        assert [item["jobId"] for item in by_event["items"]] == ["job-1"]

    async def test_jobs_by_time_and_status(
        self, client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        """Jobs filter by since/until (when created) and a validated status."""
        await seed(client, clock, "training.started", "training.failed")
        assert len((await get(client, f"/admin/jobs?since={PAST}"))["items"]) == 2
        assert (await get(client, f"/admin/jobs?since={FUTURE}"))["items"] == []
        failed = await get(client, f"/admin/jobs?status=failed&until={FUTURE}")
        assert [job["llmtuneJobId"] for job in failed["items"]] == ["job-1"]

    async def test_events_by_test_flag_and_job(
        self, client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        """`test` and `jobId` narrow the event list."""
        await seed(client, clock, "training.started")
        sent = (await client.post("/admin/test-event", headers=AUTH)).json()
        tests = await get(client, "/admin/events?test=true")
        assert [item["id"] for item in tests["items"]] == [sent["id"]]
        real = await get(client, "/admin/events?test=false&jobId=job-0")
        assert [item["jobId"] for item in real["items"]] == ["job-0"]


class TestDeclarations:
    def test_every_admin_route_declares_itself(self) -> None:
        """Each admin route carries its operation: lists name their item shape, mutations
        write and audit."""
        assert all(isinstance(route, AdminRoute) for route in ROUTES)
        for operation in operations():
            assert operation.summary, operation.path
            if operation.query.paged or operation.method != "GET":
                assert operation.response is not None, operation.path
            if operation.method == "GET":
                assert (operation.scope, operation.action) == ("read", None)
            else:
                assert operation.scope == "write"
                assert operation.action, operation.path

    def test_list_routes(self) -> None:
        """The paged lists and their declared filters."""
        lists = {
            op.path: sorted(set(op.query.model_fields) - {"limit", "cursor"})
            for op in operations()
            if op.query.paged
        }
        assert lists == {
            "/admin/events": ["duplicate", "jobId", "since", "test", "type", "until", "workspace"],
            "/admin/deliveries": [
                "eventId",
                "jobId",
                "route",
                "since",
                "status",
                "until",
                "workspace",
            ],
            "/admin/jobs": ["since", "status", "until"],
            "/admin/rejections": ["reason", "since", "until"],
        }

    async def test_listed_items_match_their_shapes(
        self, client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        """Each list answers items with exactly the keys of its declared TypedDict."""
        await seed(client, clock, "training.started")
        await post_webhook(client, b"{}", headers={"Content-Type": "application/json"})
        for path, shape in (
            ("/admin/events", shapes.EventSummary),
            ("/admin/deliveries", shapes.DeliveryView),
            ("/admin/jobs", shapes.JobSummary),
        ):
            [item] = (await get(client, path))["items"]
            assert set(item) == set(shape.__required_keys__), path
