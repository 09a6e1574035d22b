"""`POST /admin/test-event`: a synthetic event, flagged as a test, through the whole pipeline
(ingest, store, routes, worker). Both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.dispatch.worker import WorkerConfig
from tests.api.test_deliveries import eventually
from tests.helpers import AUTH, make_settings, running_app


@pytest.fixture
async def client(engine: AsyncEngine, db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(db_url, run_worker=True)
    config = WorkerConfig(poll_seconds=0.05)
    async with running_app(settings, engine, worker=config) as client:
        yield client


async def test_test_event_is_delivered_to_the_log_route(client: httpx.AsyncClient) -> None:
    """201 with the stored event (a test, a fresh test- job); the worker delivers it."""
    response = await client.post("/admin/test-event", headers=AUTH)
    assert response.status_code == 201
    event = response.json()
    assert (event["type"], event["source"], event["isTest"], event["verified"]) == (
        "training.completed",
        "test",
        True,
        True,
    )
    assert event["jobId"].startswith("test-")
    assert event["routes"] == ["log"]
    delivered = await eventually(
        client,
        f"/admin/deliveries?eventId={event['id']}",
        lambda body: [item["status"] for item in body["items"]] == ["succeeded"],
    )
    assert delivered["items"][0]["route"] == "log"
    detail = (await client.get(f"/admin/events/{event['id']}", headers=AUTH)).json()
    assert detail["payload"]["test"] is True


async def test_event_type_comes_from_the_body(client: httpx.AsyncClient) -> None:
    """`{"event": ...}` picks the lifecycle event; each test event is new, never a duplicate."""
    first = await client.post("/admin/test-event", headers=AUTH, json={"event": "model.deployed"})
    second = await client.post("/admin/test-event", headers=AUTH, json={"event": "model.deployed"})
    assert first.json()["type"] == second.json()["type"] == "model.deployed"
    assert first.json()["jobId"] != second.json()["jobId"]
    assert second.json()["duplicateCount"] == 0


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        pytest.param(b'{"event": "training.exploded"}', "event", id="unknown-event"),
        pytest.param(b'{"event": "training.completed", "jobId": "x"}', "jobId", id="extra"),
        pytest.param(b'{"workspace": "nope"}', "workspace", id="unknown-workspace"),
        pytest.param(b"[1]", "body", id="not-an-object"),
    ],
)
async def test_bad_body_is_400(client: httpx.AsyncClient, body: bytes, parameter: str) -> None:
    """A body it cannot honour is refused, naming the field, and nothing is stored."""
    response = await client.post("/admin/test-event", headers=AUTH, content=body)
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"parameter": parameter}
    assert (await client.get("/admin/events", headers=AUTH)).json()["items"] == []


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    """A body that is not JSON is INVALID_PARAMETER, not a 500."""
    response = await client.post("/admin/test-event", headers=AUTH, content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_PARAMETER"
