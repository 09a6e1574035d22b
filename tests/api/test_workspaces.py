"""Several LLMTune workspaces: each at its own path with its own secrets, events kept apart,
and routes that narrow themselves to some workspaces. Both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import AUTH, SECRET, make_settings, running_app, w3_body, w3_headers

PROD_SECRET = "whsec_cHJvZC13b3Jrc3BhY2Utc2VjcmV0LWZvci10ZXN0cw=="
ROUTES = f"""
[[workspaces]]
name = "prod"
secrets = ["{PROD_SECRET}"]

[[routes]]
name = "everything"
events = ["*"]
handler = "log"

[[routes]]
name = "prod-only"
events = ["training.*"]
handler = "log"
workspaces = ["prod"]
"""


@pytest.fixture
async def client(
    engine: AsyncEngine, db_url: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    routes_file = tmp_path / "routes.toml"
    routes_file.write_text(ROUTES)
    async with running_app(make_settings(db_url, routes_file=routes_file), engine) as client:
        yield client


async def post(client: httpx.AsyncClient, path: str, body: bytes, secret: str) -> httpx.Response:
    return await client.post(path, content=body, headers=w3_headers(body, secret))


async def test_each_workspace_has_its_own_path_and_secret(client: httpx.AsyncClient) -> None:
    """prod's secret works at /webhooks/llmtune/prod only; the default secret does not."""
    body = w3_body(job_id="job-w1")
    assert (await post(client, "/webhooks/llmtune/prod", body, PROD_SECRET)).status_code == 200
    assert (await post(client, "/webhooks/llmtune/prod/", body, PROD_SECRET)).status_code == 200
    wrong = await post(client, "/webhooks/llmtune/prod", w3_body(job_id="job-w2"), SECRET)
    assert wrong.status_code == 401
    other = await post(client, "/webhooks/llmtune", w3_body(job_id="job-w3"), PROD_SECRET)
    assert other.status_code == 401


@pytest.mark.parametrize("name", ["staging", "default", "jobs", "PROD"])
async def test_unknown_or_reserved_workspace_is_404(client: httpx.AsyncClient, name: str) -> None:
    """Only configured workspaces have a path; the default one is only the plain path."""
    body = w3_body()
    response = await post(client, f"/webhooks/llmtune/{name}", body, SECRET)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_events_are_kept_apart_and_filtered(client: httpx.AsyncClient) -> None:
    """The same event from two workspaces is two events, each listed under its workspace."""
    body = w3_body(job_id="job-same")
    first = await post(client, "/webhooks/llmtune", body, SECRET)
    second = await post(client, "/webhooks/llmtune/prod", body, PROD_SECRET)
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, False)
    prod = (await client.get("/admin/events?workspace=prod", headers=AUTH)).json()["items"]
    assert [(e["id"], e["workspace"]) for e in prod] == [(second.json()["eventId"], "prod")]
    default = (await client.get("/admin/events?workspace=default", headers=AUTH)).json()
    assert [e["id"] for e in default["items"]] == [first.json()["eventId"]]


async def test_routes_narrowed_to_a_workspace(client: httpx.AsyncClient) -> None:
    """A route with `workspaces = ["prod"]` gets prod's events and no others."""
    await post(client, "/webhooks/llmtune", w3_body(job_id="job-d"), SECRET)
    await post(client, "/webhooks/llmtune/prod", w3_body(job_id="job-p"), PROD_SECRET)
    listed = (await client.get("/admin/deliveries", headers=AUTH)).json()["items"]
    routes = sorted((d["jobId"], d["route"]) for d in listed)
    assert routes == [("job-d", "everything"), ("job-p", "everything"), ("job-p", "prod-only")]
    prod = (await client.get("/admin/deliveries?workspace=prod", headers=AUTH)).json()["items"]
    assert sorted(d["route"] for d in prod) == ["everything", "prod-only"]
