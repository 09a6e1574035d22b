"""The per-job callback URL (`/webhooks/llmtune/jobs/{token}`) registered with each submission."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.store import jobs
from service.store.jobs import StoredJob, Submission
from service.store.tables import EventRow, JobRow
from tests.helpers import (
    AUTH,
    T0,
    make_settings,
    running_app,
    single_engine_database,
    w3_body,
    w3_headers,
)

SUBMISSION = Submission("base", "s3://bucket/d.jsonl", "sft", {}, "cb-key")


@pytest.fixture
async def client(engine: AsyncEngine, db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(db_url), engine) as client:
        yield client


async def submitted_job(engine: AsyncEngine, llmtune_job_id: str | None = "ft-42") -> StoredJob:
    """A job as a submission leaves it: a callback token, and LLMTune's id once it answered."""
    db = single_engine_database(engine)
    row, _ = await db.write(lambda s: jobs.create_submission(s, SUBMISSION, now=T0))
    if llmtune_job_id is not None:
        await db.write(
            lambda s: jobs.record_accepted(s, row.id, llmtune_job_id=llmtune_job_id, now=T0)
        )
    return row


def callback(row: StoredJob) -> str:
    return f"/webhooks/llmtune/jobs/{row.callback_token}"


async def stored_events(engine: AsyncEngine) -> list[tuple[str, str, bool]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(EventRow.type, EventRow.source, EventRow.verified))
        return [(r.type, r.source, r.verified) for r in rows]


async def test_signed_delivery_moves_the_job(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    """A signed delivery to the job's URL is stored as a `job-callback` and advances the job."""
    row = await submitted_job(engine)
    body = w3_body("training.started", job_id="ft-42")
    answer = await client.post(callback(row), content=body, headers=w3_headers(body))
    assert answer.status_code == 200
    assert answer.json()["duplicate"] is False
    assert await stored_events(engine) == [("training.started", "job-callback", True)]
    job = await client.get(f"/admin/jobs/{row.id}", headers=AUTH)
    assert job.json()["status"] == "running"


async def job_status(engine: AsyncEngine, job_id: str) -> tuple[str, str | None]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(JobRow.status, JobRow.artifact).where(JobRow.id == job_id))
        ).one()
        return row.status, row.artifact


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(w3_body("training.completed", job_id="ft-42", artifact="evil/m"), id="own"),
        pytest.param(w3_body("model.deployed", job_id="ft-other", modelId="evil/m"), id="other"),
        pytest.param(b"not json at all", id="not-json"),
    ],
)
async def test_unsigned_delivery_is_only_a_doorbell(
    engine: AsyncEngine, client: httpx.AsyncClient, event: bytes
) -> None:
    """Unsigned, whatever it says: 202, nothing stored, the job unmoved; without an LLMTune API
    key there is nobody to ask, and the answer says so."""
    row = await submitted_job(engine)
    answer = await client.post(callback(row), content=event, headers={})
    assert answer.status_code == 202
    assert answer.json() == {"received": True, "stored": False, "poll": "jobs_disabled"}
    assert await stored_events(engine) == []
    assert await job_status(engine, row.id) == ("pending", None)
    metrics = (await client.get("/metrics")).text
    assert 'llmtune_job_callback_doorbells_total{outcome="jobs_disabled"} 1.0' in metrics


async def test_unsigned_refused_when_operators_say_so(engine: AsyncEngine, db_url: str) -> None:
    """JOB_CALLBACKS_UNSIGNED=refuse: an unsigned callback is a 401 like on the main endpoint."""
    settings = make_settings(db_url, job_callbacks_unsigned="refuse")
    async with running_app(settings, engine) as client:
        row = await submitted_job(engine)
        body = w3_body("training.completed", job_id="ft-42")
        answer = await client.post(callback(row), content=body, headers={})
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "MISSING_SIGNATURE"
        signed = await client.post(callback(row), content=body, headers=w3_headers(body))
        assert signed.status_code == 200
    assert await stored_events(engine) == [("training.completed", "job-callback", True)]


async def test_wrong_signature_is_refused(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    """A signature that is there but wrong is a 401, never a doorbell: nothing stored."""
    row = await submitted_job(engine)
    body = w3_body("training.completed", job_id="ft-42")
    answer = await client.post(callback(row), content=body, headers={"X-Webhook-Signature": "0"})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "INVALID_SIGNATURE"
    assert await stored_events(engine) == []


READ_TOKEN = "viewer-read-token-0123456789"
WRITE_TOKEN = "operator-write-token-0123456789"


async def test_callback_token_shown_to_write_scope_only(engine: AsyncEngine, db_url: str) -> None:
    """The callback token is a credential: a read-scoped token sees `{token}` in its place."""
    settings = make_settings(
        db_url, admin_tokens=[f"ci:read:{READ_TOKEN}", f"ops:write:{WRITE_TOKEN}"]
    )
    async with running_app(settings, engine) as client:
        row = await submitted_job(engine)
        assert row.callback_token is not None
        seen = {}
        for name, token in (("read", READ_TOKEN), ("write", WRITE_TOKEN)):
            answer = await client.get(
                f"/admin/jobs/{row.id}", headers={"Authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 200
            seen[name] = answer.text
    assert row.callback_token not in seen["read"]
    assert '"webhookUrl":"http://127.0.0.1:8000/webhooks/llmtune/jobs/{token}"' in seen["read"]
    assert f"/webhooks/llmtune/jobs/{row.callback_token}" in seen["write"]


@pytest.mark.parametrize("token", ["x" * 32, "short", "é" * 20])
async def test_unknown_token_is_404(client: httpx.AsyncClient, token: str) -> None:
    """A token no job has (or one that cannot be a token) answers 404 in LLMTune's shape."""
    body = w3_body()
    answer = await client.post(
        f"/webhooks/llmtune/jobs/{token}", content=body, headers=w3_headers(body)
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "NOT_FOUND"
