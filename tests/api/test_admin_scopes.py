"""Named, scoped admin tokens: read tokens read, write tokens write, and every mutating call
leaves one `admin_action` line naming the token (never its secret). On SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from tests.helpers import make_settings, post_webhook, running_app, w3_body

READ = {"Authorization": "Bearer read-secret-0123456"}
WRITE = {"Authorization": "Bearer write-secret-0123456"}
BARE = {"Authorization": "Bearer bare-secret-0123456"}
TOKENS = ["ci:read:read-secret-0123456", "ops:write:write-secret-0123456", "bare-secret-0123456"]

MUTATIONS = [
    pytest.param("/admin/test-event", id="test-event"),
    pytest.param("/admin/deliveries/retry", id="bulk-retry"),
    pytest.param("/admin/deliveries/dlv_0123abcd/retry", id="retry"),
    pytest.param("/admin/events/evt_0123abcd/replay", id="replay"),
    pytest.param("/admin/jobs", id="submit"),
    pytest.param("/admin/jobs/job_0123abcd/refresh", id="refresh"),
]
READS = ["/admin/events", "/admin/deliveries", "/admin/jobs", "/admin/rejections"]


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: which token may do what is decided before any store is asked
    (tests/integration runs the storage underneath on both databases)."""
    return sqlite_url


@pytest.fixture
async def client(engine: AsyncEngine, db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(db_url, admin_tokens=TOKENS), engine) as client:
        yield client


def actions(lines: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    """The captured `admin_action` lines."""
    return [line for line in lines if line["event"] == "admin_action"]


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("headers", [READ, WRITE, BARE], ids=["read", "write", "bare"])
async def test_every_token_reads(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    """Read, write and bare tokens all list."""
    assert (await client.get(path, headers=headers)).status_code == 200


@pytest.mark.parametrize("path", MUTATIONS)
async def test_read_token_may_not_mutate(client: httpx.AsyncClient, path: str) -> None:
    """A read token on a POST is 403 FORBIDDEN before anything runs; the attempt is audited."""
    with capture_logs() as lines:
        response = await client.post(path, headers=READ, json={})
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("FORBIDDEN", "this token may only read")
    assert error["details"] == {"token": "ci"}
    [line] = actions(lines)
    assert (line["token"], line["status"], line["error"]) == ("ci", 403, "FORBIDDEN")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": "Bearer nope"}, id="unknown"),
        pytest.param({"Authorization": "Bearer ci:read:read-secret-0123456"}, id="whole-entry"),
        pytest.param({}, id="none"),
    ],
)
async def test_unknown_token_is_401(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Only the secret part authenticates; anything else is 401 on reads and writes."""
    for response in (
        await client.get("/admin/events", headers=headers),
        await client.post("/admin/test-event", headers=headers),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_named_write_token_is_named_in_the_audit_line(client: httpx.AsyncClient) -> None:
    """A mutation logs one admin_action line: the token's name, action, targets; no secret."""
    with capture_logs() as lines:
        response = await client.post("/admin/test-event", headers=WRITE)
    assert response.status_code == 201
    [line] = actions(lines)
    assert line["token"] == "ops"
    assert line["scope"] == "write"
    assert line["action"] == "test_event.send"
    assert line["status"] == 201
    assert line["event_id"] == response.json()["id"]
    assert line["job_id"] == response.json()["jobId"]
    assert "write-secret-0123456" not in repr(lines)


async def test_bare_token_still_writes(client: httpx.AsyncClient) -> None:
    """A bare token (as before names existed) writes, named token-3 by its position."""
    with capture_logs() as lines:
        response = await client.post("/admin/deliveries/retry", headers=BARE)
    assert response.json() == {"retried": 0}
    [line] = actions(lines)
    assert (line["token"], line["action"], line["retried"]) == ("token-3", "deliveries.retry", 0)
    assert line["filters"] == {}
    assert "bare-secret-0123456" not in repr(lines)


async def test_refused_mutations_are_audited_with_their_error(client: httpx.AsyncClient) -> None:
    """A write that fails (404 here) still leaves its one line, with the status and code."""
    with capture_logs() as lines:
        response = await client.post("/admin/deliveries/dlv_0123abcd/retry", headers=WRITE)
    assert response.status_code == 404
    [line] = actions(lines)
    assert (line["action"], line["status"], line["error"]) == ("delivery.retry", 404, "NOT_FOUND")
    assert line["delivery_id"] == "dlv_0123abcd"


async def test_replay_names_its_event_and_count(client: httpx.AsyncClient) -> None:
    """Replay's audit line carries the event id, the routes and how many were queued."""
    event_id = (await post_webhook(client, w3_body())).json()["eventId"]
    with capture_logs() as lines:
        response = await client.post(f"/admin/events/{event_id}/replay", headers=WRITE)
    assert response.status_code == 200
    [line] = actions(lines)
    assert (line["event_id"], line["queued"], line["routes"]) == (event_id, 1, ["log"])
