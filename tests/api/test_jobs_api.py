"""`POST /admin/jobs` where no LLMTune answers: disabled without a key, 503 when unreachable
(the row kept, nothing doubled), and the request body's validation."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.server import free_port
from tests.helpers import AUTH, make_settings, running_app

REQUEST = {"baseModel": "meta-llama/Llama-3.3-70B-Instruct", "dataset": "s3://b/d.jsonl"}


async def test_without_an_api_key_jobs_are_disabled(engine: AsyncEngine, db_url: str) -> None:
    """No LLMTUNE_API_KEY: 503 JOBS_DISABLED, nothing stored."""
    async with running_app(make_settings(db_url), engine) as client:
        answer = await client.post("/admin/jobs", json=REQUEST, headers=AUTH)
        listed = await client.get("/admin/jobs", headers=AUTH)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "JOBS_DISABLED"
    assert listed.json()["items"] == []


async def test_unreachable_llmtune_keeps_the_row_and_answers_503(
    engine: AsyncEngine, db_url: str
) -> None:
    """LLMTune not answering: 503 naming the kept job; a retry with the key reuses that row."""
    settings = make_settings(
        db_url,
        llmtune_api_url=f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
        llmtune_api_key="sk_test",
    )
    body = REQUEST | {"idempotencyKey": "retry-me"}
    async with running_app(settings, engine) as client:
        first = await client.post("/admin/jobs", json=body, headers=AUTH)
        second = await client.post("/admin/jobs", json=body, headers=AUTH)
        listed = (await client.get("/admin/jobs", headers=AUTH)).json()["items"]
    assert (first.status_code, second.status_code) == (503, 503)
    error = first.json()["error"]
    assert set(error) == {"message", "code", "details"}
    assert error["details"]["jobId"] == second.json()["error"]["details"]["jobId"]
    [job] = listed
    assert (job["status"], job["llmtuneJobId"]) == ("submitted", None)
    assert job["submitError"].startswith("unreachable")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        pytest.param({}, {"baseModel", "dataset"}, id="empty"),
        pytest.param(REQUEST | {"trainingMethod": ""}, {"trainingMethod"}, id="blank-method"),
        pytest.param(
            REQUEST | {"hyperparameters": {"learningRate": -1}},
            {"hyperparameters.learningRate"},
            id="negative-rate",
        ),
        pytest.param(
            REQUEST | {"hyperparameters": {"warmup": 3}},
            {"hyperparameters.warmup"},
            id="unknown-hyperparameter",
        ),
        pytest.param(REQUEST | {"webhookUrl": "https://x"}, {"webhookUrl"}, id="no-own-webhook"),
        pytest.param(REQUEST | {"idempotencyKey": "k" * 201}, {"idempotencyKey"}, id="long-key"),
    ],
)
async def test_invalid_requests_are_400(
    engine: AsyncEngine, db_url: str, body: dict[str, Any], fields: set[str]
) -> None:
    """Each problem is named by its field; nothing is stored."""
    settings = make_settings(db_url, llmtune_api_key="sk_test")
    async with running_app(settings, engine) as client:
        answer = await client.post("/admin/jobs", json=body, headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "INVALID_PARAMETER"
    assert {p["field"] for p in answer.json()["error"]["details"]["problems"]} == fields


@pytest.mark.parametrize("raw", [b"", b"[1]", b"{not json"])
async def test_body_that_is_not_an_object_is_400(
    engine: AsyncEngine, db_url: str, raw: bytes
) -> None:
    """No body, a list, or broken JSON: 400 in LLMTune's shape, never a 500."""
    settings = make_settings(db_url, llmtune_api_key="sk_test")
    async with running_app(settings, engine) as client:
        answer = await client.post("/admin/jobs", content=raw, headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "INVALID_PARAMETER"


async def test_unknown_job_is_404(engine: AsyncEngine, db_url: str) -> None:
    """By our id, by an LLMTune id nobody has, and a refresh of neither."""
    settings = make_settings(db_url, llmtune_api_key="sk_test")
    async with running_app(settings, engine) as client:
        for path in ("/admin/jobs/job_0123", "/admin/jobs/ft-nobody"):
            assert (await client.get(path, headers=AUTH)).status_code == 404
        refresh = await client.post("/admin/jobs/ft-nobody/refresh", headers=AUTH)
    assert refresh.status_code == 404


async def test_jobs_need_the_admin_token(engine: AsyncEngine, db_url: str) -> None:
    """No token, no submission."""
    async with running_app(make_settings(db_url), engine) as client:
        answer = await client.post("/admin/jobs", json=REQUEST)
    assert answer.status_code == 401
