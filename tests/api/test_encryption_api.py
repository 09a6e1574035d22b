"""The admin API over sealed rows: bodies shown unchanged, and a row that cannot be opened is a
503 in LLMTune's error shape, never garbage or a 500; a start with the wrong key is refused."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.crypto.sealing import generate_key, parse_key
from service.fake_llmtune import FakeConfig, Switches
from service.store.keys import KeyCheckFailed
from tests.helpers import AUTH, SECRET, make_settings, post_webhook, running_app, w3_body
from tests.integration.test_fake_llmtune import running_fake

KEY = generate_key()
OTHER = generate_key()


async def test_sealed_bodies_read_back_and_a_tampered_one_is_503(
    engine: AsyncEngine, db_url: str
) -> None:
    settings = make_settings(db_url, encryption_keys=[KEY])
    async with running_app(settings, engine) as client:
        bodies = [w3_body("training.started", f"job-{n}", note="confidential") for n in (1, 2)]
        ids = [(await post_webhook(client, body)).json()["eventId"] for body in bodies]
        for event_id, body in zip(ids, bodies, strict=True):
            shown = (await client.get(f"/admin/events/{event_id}", headers=AUTH)).json()
            assert shown["rawBody"] == body.decode()
            assert shown["payload"]["data"]["note"] == "confidential"
        # One row's sealed body copied into the other: it must not open as the other's.
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "UPDATE events SET raw_body = (SELECT raw_body FROM events WHERE id = :a) "
                    "WHERE id = :b"
                ),
                {"a": ids[0], "b": ids[1]},
            )
        response = await client.get(f"/admin/events/{ids[1]}", headers=AUTH)
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "ENCRYPTION_KEY_UNAVAILABLE"
        assert error["details"] == {"keyId": parse_key(KEY).id}
        assert "confidential" not in response.text
        # The list never opens bodies, so it still answers.
        listed = await client.get("/admin/events", headers=AUTH)
        assert listed.status_code == 200


async def test_an_app_started_with_another_key_refuses_to_start(
    engine: AsyncEngine, db_url: str
) -> None:
    async with running_app(make_settings(db_url, encryption_keys=[KEY]), engine) as client:
        assert (await post_webhook(client, w3_body())).status_code == 200
    with pytest.raises(KeyCheckFailed, match=f"sealed under key {parse_key(KEY).id}"):
        async with running_app(make_settings(db_url, encryption_keys=[OTHER]), engine):
            pass


async def test_encryption_off_reads_and_writes_in_clear(engine: AsyncEngine, db_url: str) -> None:
    async with running_app(make_settings(db_url), engine) as client:
        body = w3_body(note="plain")
        event_id = (await post_webhook(client, body)).json()["eventId"]
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                sa.text("SELECT raw_body, sealed_with FROM events WHERE id = :id"), {"id": event_id}
            )
        ).one()
    assert bytes(stored.raw_body) == body
    assert stored.sealed_with is None


async def test_a_submitted_jobs_dataset_is_sealed_and_resubmitted_in_clear(
    engine: AsyncEngine, db_url: str
) -> None:
    """The dataset location (often a pre-signed URL) is sealed in `jobs`; the job view shows it,
    and a retried submission (LLMTune failed the first) sends LLMTune the clear location."""
    dataset = "s3://bucket/train.jsonl?X-Amz-Signature=abc123"
    switches = Switches(fail_status=402, fail_times=1)  # final: the client does not retry it
    config = FakeConfig(secret=SECRET, step_seconds=0, api_key="sk_test", switches=switches)
    async with running_fake(config) as fake:
        settings = make_settings(
            db_url,
            encryption_keys=[KEY],
            llmtune_api_url=str(fake.client.base_url.join("/v1")),
            llmtune_api_key="sk_test",
        )
        request = {"baseModel": "base", "dataset": dataset, "idempotencyKey": "sealed-1"}
        async with running_app(settings, engine) as client:
            failed = await client.post("/admin/jobs", json=request, headers=AUTH)
            assert failed.status_code == 402
            job_id = failed.json()["error"]["details"]["jobId"]
            async with engine.connect() as conn:
                stored = (
                    await conn.execute(sa.text("SELECT dataset, sealed_with FROM jobs"))
                ).one()
            assert stored.sealed_with == parse_key(KEY).id
            assert "amz" not in stored.dataset.lower()
            assert "bucket" not in stored.dataset
            accepted = await client.post("/admin/jobs", json=request, headers=AUTH)
            assert accepted.status_code == 200, accepted.text  # the same job, not a new one
            assert accepted.json()["id"] == job_id
            assert accepted.json()["dataset"] == dataset
            shown = (await client.get(f"/admin/jobs/{job_id}", headers=AUTH)).json()
            assert shown["dataset"] == dataset
            listed = (await client.get("/admin/jobs", headers=AUTH)).json()["items"]
            assert [job["dataset"] for job in listed] == [dataset]
        received = (await fake.client.get("/_fake/received")).json()["requests"]
    assert [r["body"]["dataset"] for r in received] == [dataset, dataset]
