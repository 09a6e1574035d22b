"""The per-job callback URL (`/webhooks/llmtune/jobs/{token}`) registered with each submission."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.store import jobs
from service.store.jobs import Submission
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


async def submitted_job(engine: AsyncEngine, llmtune_job_id: str | None = "ft-42") -> JobRow:
    """A job as a submission leaves it: a callback token, and LLMTune's id once it answered."""
    db = single_engine_database(engine)
    row, _ = await db.write(lambda s: jobs.create_submission(s, SUBMISSION, now=T0))
    if llmtune_job_id is not None:
        await db.write(
            lambda s: jobs.record_accepted(s, row.id, llmtune_job_id=llmtune_job_id, now=T0)
        )
    return row


def callback(row: JobRow) -> str:
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


async def test_unsigned_delivery_about_this_job_is_let_in_unverified(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    """LLMTune may not sign per-job callbacks: the unguessable URL plus the job id admit it."""
    row = await submitted_job(engine)
    body = w3_body("training.completed", job_id="ft-42")
    headers = {"Content-Type": "application/json"}
    answer = await client.post(callback(row), content=body, headers=headers)
    assert answer.status_code == 200
    assert await stored_events(engine) == [("training.completed", "job-callback", False)]


@pytest.mark.parametrize(
    ("body_job", "signed", "code"),
    [
        pytest.param("ft-other", False, "MISSING_SIGNATURE", id="unsigned-other-job"),
        pytest.param("ft-42", "wrong", "INVALID_SIGNATURE", id="wrong-signature"),
    ],
)
async def test_refused_deliveries(
    engine: AsyncEngine, client: httpx.AsyncClient, body_job: str, signed: object, code: str
) -> None:
    """Unsigned and about another job, or signed wrongly: 401, nothing stored."""
    row = await submitted_job(engine)
    body = w3_body("training.completed", job_id=body_job)
    headers = {"Content-Type": "application/json"}
    if signed == "wrong":
        headers["X-Webhook-Signature"] = "0" * 64
    answer = await client.post(callback(row), content=body, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == code
    assert await stored_events(engine) == []


async def test_unsigned_before_llmtune_answered_is_refused(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    """Until LLMTune's job id is known nothing unsigned can be matched to the job."""
    row = await submitted_job(engine, llmtune_job_id=None)
    body = w3_body("training.started", job_id="ft-42")
    answer = await client.post(callback(row), content=body, headers={})
    assert answer.status_code == 401


@pytest.mark.parametrize("token", ["x" * 32, "short", "é" * 20])
async def test_unknown_token_is_404(client: httpx.AsyncClient, token: str) -> None:
    """A token no job has (or one that cannot be a token) answers 404 in LLMTune's shape."""
    body = w3_body()
    answer = await client.post(
        f"/webhooks/llmtune/jobs/{token}", content=body, headers=w3_headers(body)
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "NOT_FOUND"
