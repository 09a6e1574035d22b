"""The read-only admin API: auth, lists with filters and keyset pages, details."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.clock import FakeClock
from tests.helpers import AUTH, make_settings, post_webhook, running_app, w3_body

T0 = datetime(2025, 11, 8, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def client(
    engine: AsyncEngine, db_url: str, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(db_url), engine, clock=clock) as client:
        yield client


async def seed(client: httpx.AsyncClient, clock: FakeClock, count: int) -> list[str]:
    """Store `count` events one second apart; return their ids, oldest first."""
    ids = []
    for index in range(count):
        clock.advance(timedelta(seconds=1))
        response = await post_webhook(client, w3_body("training.started", f"job-{index}"))
        ids.append(response.json()["eventId"])
    return ids


class TestAuth:
    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param([], id="none"),
            pytest.param([(b"authorization", b"Bearer wrong")], id="wrong"),
            pytest.param([(b"authorization", b"Basic dGVzdA==")], id="other-scheme"),
            pytest.param([(b"authorization", b"Bearer ")], id="empty"),
            pytest.param([(b"authorization", b"Bearer t\xe9st")], id="non-ascii"),
        ],
    )
    @pytest.mark.parametrize("path", ["/admin/events", "/admin/jobs", "/admin/events/x"])
    async def test_refused_without_valid_token(
        self, client: httpx.AsyncClient, headers: list[tuple[bytes, bytes]], path: str
    ) -> None:
        """Every admin route needs a configured Bearer token."""
        response = await client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_scheme_is_case_insensitive(self, client: httpx.AsyncClient) -> None:
        """`bearer` works as well as `Bearer`."""
        token = AUTH["Authorization"].split()[1]
        response = await client.get("/admin/events", headers={"Authorization": f"bearer {token}"})
        assert response.status_code == 200


class TestEventList:
    async def test_newest_first_with_keyset_pages(
        self, client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        """Pages of 2 walk all 5 events newest first, then nextCursor is null."""
        ids = await seed(client, clock, 5)
        seen: list[str] = []
        url = "/admin/events?limit=2"
        while True:
            page = (await client.get(url, headers=AUTH)).json()
            seen += [item["id"] for item in page["items"]]
            if page["nextCursor"] is None:
                break
            url = f"/admin/events?limit=2&cursor={page['nextCursor']}"
        assert seen == list(reversed(ids))

    async def test_same_received_at_ties_break_on_id(self, client: httpx.AsyncClient) -> None:
        """Events stored at the same instant still page without loss or repeats."""
        for index in range(5):
            await post_webhook(client, w3_body("training.started", f"tie-{index}"))
        first = (await client.get("/admin/events?limit=3", headers=AUTH)).json()
        rest = (
            await client.get(f"/admin/events?limit=3&cursor={first['nextCursor']}", headers=AUTH)
        ).json()
        ids = [i["id"] for i in first["items"] + rest["items"]]
        assert len(ids) == len(set(ids)) == 5
        assert ids == sorted(ids, reverse=True)

    async def test_item_fields(self, client: httpx.AsyncClient) -> None:
        """A listed event shows the fields an operator needs, in camelCase."""
        await post_webhook(client, w3_body())
        [item] = (await client.get("/admin/events", headers=AUTH)).json()["items"]
        assert item["type"] == "training.completed"
        assert item["jobId"] == "job-1"
        assert item["dedupKey"] == "sem:training.completed:job-1"
        assert item["receivedAt"] == "2025-11-08T12:00:00.000000Z"
        assert item["occurredAt"] == "2025-11-08T14:22:31.000000Z"
        assert item["verified"] is True
        assert item["duplicateCount"] == 0

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("type=training.failed", ["job-f"]),
            ("jobId=job-a", ["job-a"]),
            ("duplicate=true", ["job-a"]),
            ("duplicate=false", ["job-t", "job-f"]),
            ("test=true", ["job-t"]),
            ("test=false", ["job-f", "job-a"]),
            ("type=training.completed&duplicate=true", ["job-a"]),
            ("since=2025-11-08T12:00:02Z", ["job-t", "job-f"]),
            ("until=2025-11-08T12:00:02Z", ["job-a"]),
        ],
    )
    async def test_filters(
        self, client: httpx.AsyncClient, clock: FakeClock, query: str, expected: list[str]
    ) -> None:
        """Filters narrow the list; test deliveries are listed unless filtered out."""
        clock.advance(timedelta(seconds=1))
        await post_webhook(client, w3_body("training.completed", "job-a"))
        await post_webhook(client, w3_body("training.completed", "job-a"))
        clock.advance(timedelta(seconds=1))
        await post_webhook(client, w3_body("training.failed", "job-f"))
        clock.advance(timedelta(seconds=1))
        test_body = orjson.dumps({"event": "ping.test", "test": True, "data": {"jobId": "job-t"}})
        await post_webhook(client, test_body)
        items = (await client.get(f"/admin/events?{query}", headers=AUTH)).json()["items"]
        assert [item["jobId"] for item in items] == expected

    async def test_odd_filter_values_match_what_was_stored(self, client: httpx.AsyncClient) -> None:
        """A NUL in a filter finds nothing (no 5xx); a long job id finds its hashed form."""
        long_job = "j" * 500
        await post_webhook(client, w3_body("training.started", long_job))
        nul = await client.get("/admin/events?jobId=%00&type=%00", headers=AUTH)
        assert nul.status_code == 200
        assert nul.json()["items"] == []
        found = (await client.get(f"/admin/events?jobId={long_job}", headers=AUTH)).json()
        assert len(found["items"]) == 1

    @pytest.mark.parametrize(
        ("query", "parameter"),
        [
            ("limit=0", "limit"),
            ("limit=201", "limit"),
            ("limit=ten", "limit"),
            ("limit=-1", "limit"),
            ("cursor=garbage", "cursor"),
            ("duplicate=maybe", "duplicate"),
            ("test=2", "test"),
            ("since=yesterday", "since"),
            ("until=2025-13-01", "until"),
        ],
    )
    async def test_bad_parameters_are_400(
        self, client: httpx.AsyncClient, query: str, parameter: str
    ) -> None:
        """Malformed parameters get 400 INVALID_PARAMETER naming the parameter."""
        response = await client.get(f"/admin/events?{query}", headers=AUTH)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "INVALID_PARAMETER"
        assert error["details"] == {"parameter": parameter}


class TestEventDetail:
    async def test_detail_has_payload_raw_body_redacted_headers_and_deliveries(
        self, client: httpx.AsyncClient
    ) -> None:
        """The detail shows exactly what arrived, with signature values hidden."""
        body = w3_body()
        event_id = (await post_webhook(client, body)).json()["eventId"]
        detail = (await client.get(f"/admin/events/{event_id}", headers=AUTH)).json()
        assert detail["payload"] == orjson.loads(body)
        assert detail["rawBody"] == body.decode()
        headers = {h["name"]: h["value"] for h in detail["headers"]}
        assert headers["x-webhook-signature"] == "[redacted]"
        assert headers["content-type"] == "application/json"
        [delivery] = detail["deliveries"]
        assert (delivery["route"], delivery["status"], delivery["attempts"]) == (
            "log",
            "pending",
            0,
        )

    @pytest.mark.parametrize(
        "event_id",
        ["evt_0123456789abcdef", "evt_missing", "x" * 500, "%00", "'; drop table events"],
    )
    async def test_unknown_or_malformed_id_is_404(
        self, client: httpx.AsyncClient, event_id: str
    ) -> None:
        """Ids are opaque: anything that is not a stored id is 404."""
        response = await client.get(f"/admin/events/{event_id}", headers=AUTH)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"


class TestJobs:
    async def test_job_list_and_timeline(self, client: httpx.AsyncClient, clock: FakeClock) -> None:
        """A job made by events lists its status and its events in arrival order."""
        await post_webhook(client, w3_body("training.started", "job-x"))
        clock.advance(timedelta(seconds=1))
        await post_webhook(client, w3_body("training.completed", "job-x", metrics={"loss": 0.9}))
        [job] = (await client.get("/admin/jobs", headers=AUTH)).json()["items"]
        assert job["llmtuneJobId"] == "job-x"
        assert job["status"] == "completed"
        assert job["metrics"] == {"loss": 0.9}
        detail = (await client.get(f"/admin/jobs/{job['id']}", headers=AUTH)).json()
        assert [e["type"] for e in detail["events"]] == ["training.started", "training.completed"]
        assert len(detail["deliveries"]) == 2

    async def test_status_filter_and_pages(
        self, client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        """Jobs page newest first and filter by status."""
        for index in range(3):
            clock.advance(timedelta(seconds=1))
            await post_webhook(client, w3_body("training.started", f"job-{index}"))
        await post_webhook(client, w3_body("training.failed", "job-0"))
        first = (await client.get("/admin/jobs?limit=2", headers=AUTH)).json()
        assert [j["llmtuneJobId"] for j in first["items"]] == ["job-2", "job-1"]
        rest = (
            await client.get(f"/admin/jobs?limit=2&cursor={first['nextCursor']}", headers=AUTH)
        ).json()
        assert [j["llmtuneJobId"] for j in rest["items"]] == ["job-0"]
        assert rest["nextCursor"] is None
        failed = (await client.get("/admin/jobs?status=failed", headers=AUTH)).json()["items"]
        assert [j["llmtuneJobId"] for j in failed] == ["job-0"]

    @pytest.mark.parametrize("job_id", ["job_nope", "job_0123456789abcdef"])
    async def test_unknown_job_is_404(self, client: httpx.AsyncClient, job_id: str) -> None:
        """An id that is not ours, or ours in shape but not stored, is 404."""
        response = await client.get(f"/admin/jobs/{job_id}", headers=AUTH)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
