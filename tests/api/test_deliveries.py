"""Fan-out through the running app: the in-process worker forwards to a real HTTP sink, and the
admin API shows, retries and replays deliveries. Both databases."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.dispatch.worker import WorkerConfig
from service.routing import Subscription
from tests.helpers import AUTH, make_settings, post_webhook, running_app, w3_body
from tests.sinks import HttpSink, Reply, http_sink
from tests.waiting import until

HOOK_SECRET = "whsec_" + base64.b64encode(b"forward-secret-for-tests-32bytes").decode()


def forward_route(sink: HttpSink, **extra: Any) -> Subscription:
    """An `http` route to the sink (on 127.0.0.1, so private targets are allowed)."""
    options = {"url": f"{sink.url}/hook", "secret": HOOK_SECRET, "allow_private": True}
    return Subscription("forward", "http", ("training.*",), options=options, **extra)


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with http_sink() as running:
        yield running


async def eventually(
    client: httpx.AsyncClient, path: str, check: Callable[[Any], bool], within: float = 10.0
) -> Any:
    """GET `path` until `check(json)` holds; the last answer's JSON."""
    answers: list[Any] = []

    async def holds() -> bool:
        answers.append((await client.get(path, headers=AUTH)).json())
        return check(answers[-1])

    await until(holds, within, f"GET {path} answers as expected")
    return answers[-1]


def app_for(engine: AsyncEngine, db_url: str, route: Subscription) -> Any:
    settings = make_settings(db_url, run_worker=True)
    config = WorkerConfig(poll_seconds=0.05)
    return running_app(settings, engine, routes=(route,), worker=config)


async def test_event_is_forwarded_once_and_listed(
    engine: AsyncEngine, db_url: str, sink: HttpSink
) -> None:
    """A stored event reaches the sink once; the delivery and its attempt are listed."""
    async with app_for(engine, db_url, forward_route(sink)) as client:
        event_id = (await post_webhook(client, w3_body(job_id="job-f1"))).json()["eventId"]
        listed = await eventually(
            client,
            f"/admin/deliveries?eventId={event_id}",
            lambda body: [i["status"] for i in body["items"]] == ["succeeded"],
        )
        [item] = listed["items"]
        assert (item["route"], item["handler"], item["jobId"], item["attempts"]) == (
            "forward",
            "http",
            "job-f1",
            1,
        )
        detail = (await client.get(f"/admin/deliveries/{item['id']}", headers=AUTH)).json()
        assert [(a["number"], a["outcome"]) for a in detail["attempts"]] == [(1, "ok")]
        assert (item["nextAttemptAt"], detail["nextAttemptAt"]) == (None, None)
    [received] = sink.received
    assert received.headers["webhook-id"] == item["id"]


async def test_dead_delivery_is_listed_retried_and_announced(
    engine: AsyncEngine, db_url: str, sink: HttpSink
) -> None:
    """A permanent failure is dead at once, listed under status=dead, announced as a
    `delivery.dead` event; a retry delivers it."""
    sink.script = [Reply(status=400, body="bad")]
    async with app_for(engine, db_url, forward_route(sink)) as client:
        await post_webhook(client, w3_body(job_id="job-f2"))
        dead = await eventually(
            client, "/admin/deliveries?status=dead", lambda body: len(body["items"]) == 1
        )
        [item] = dead["items"]
        assert item["lastError"].startswith("HTTP 400")
        assert item["nextAttemptAt"] is None  # dead: nothing more is scheduled
        announced = await eventually(
            client, "/admin/events?type=delivery.dead", lambda body: len(body["items"]) == 1
        )
        assert announced["items"][0]["source"] == "internal"
        retried = await client.post(f"/admin/deliveries/{item['id']}/retry", headers=AUTH)
        body = retried.json()
        assert (body["id"], body["retried"]) == (item["id"], True)
        # Due at once: a worker woken by the commit may have claimed it before the answer is read.
        assert body["status"] in {"pending", "in_flight", "succeeded"}
        await eventually(
            client,
            f"/admin/deliveries/{item['id']}",
            lambda body: body["status"] == "succeeded",
        )
        again = await client.post(f"/admin/deliveries/{item['id']}/retry", headers=AUTH)
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "CONFLICT"
    assert len(sink.received) == 2


async def test_bulk_retry_and_replay(engine: AsyncEngine, db_url: str, sink: HttpSink) -> None:
    """Bulk retry counts what it queued; replay delivers an event again with the same id."""
    sink.script = [Reply(status=410), Reply(status=410)]
    async with app_for(engine, db_url, forward_route(sink)) as client:
        first = (await post_webhook(client, w3_body(job_id="job-b1"))).json()["eventId"]
        await post_webhook(client, w3_body(job_id="job-b2"))
        await eventually(
            client, "/admin/deliveries?status=dead", lambda body: len(body["items"]) == 2
        )
        bulk = await client.post("/admin/deliveries/retry?route=forward", headers=AUTH)
        assert bulk.json() == {"retried": 2}
        await eventually(
            client, "/admin/deliveries?status=succeeded", lambda body: len(body["items"]) == 2
        )
        replayed = await client.post(f"/admin/events/{first}/replay", headers=AUTH)
        assert replayed.json() == {"eventId": first, "queued": 1}
        await sink.wait_for(5)
    ids = [r.headers["webhook-id"] for r in sink.received]
    assert ids[-1] in ids[:-1]  # the replay carries the delivery's own id


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        pytest.param("/admin/deliveries?status=lost", "status", id="bad-status"),
        pytest.param("/admin/deliveries?limit=0", "limit", id="bad-limit"),
    ],
)
async def test_bad_filters_are_400(
    engine: AsyncEngine, db_url: str, path: str, parameter: str
) -> None:
    """Filters are checked and named in the error."""
    async with running_app(make_settings(db_url), engine) as client:
        response = await client.get(path, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"parameter": parameter}


async def test_replay_of_unknown_route_is_400(engine: AsyncEngine, db_url: str) -> None:
    """Replaying to a route that is not configured says so."""
    async with running_app(make_settings(db_url), engine) as client:
        event_id = (await post_webhook(client, w3_body())).json()["eventId"]
        response = await client.post(
            f"/admin/events/{event_id}/replay", headers=AUTH, json={"route": "nope"}
        )
    assert response.status_code == 400
    assert "nope" in response.json()["error"]["message"]


async def test_retrying_a_pending_delivery_is_200_and_changes_nothing(
    engine: AsyncEngine, db_url: str
) -> None:
    """Retry is idempotent: a delivery already pending is answered as it stands."""
    async with running_app(make_settings(db_url), engine) as client:
        event_id = (await post_webhook(client, w3_body(job_id="job-p"))).json()["eventId"]
        listed = (await client.get(f"/admin/deliveries?eventId={event_id}", headers=AUTH)).json()
        [item] = listed["items"]
        for _ in range(2):
            response = await client.post(f"/admin/deliveries/{item['id']}/retry", headers=AUTH)
            assert response.status_code == 200
            body = response.json()
            assert (body["status"], body["retried"], body["attempts"]) == ("pending", False, 0)
            assert body["nextAttemptAt"] == item["nextAttemptAt"]
