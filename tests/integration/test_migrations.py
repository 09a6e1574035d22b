"""Migrations on data that already exists, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command

from service.store.db import make_engine
from service.store.migrate import alembic_config
from tests.helpers import MODEL_ID, single_engine_database, w3_deployed, w3_headers
from tests.integration.test_ingest import make_ingest

BODY = '{"event":"training.started","data":{"jobId":"jö"}}'.encode()


async def _execute(url: str, statement: str, **params: object) -> list[tuple[Any, ...]]:
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(sa.text(statement), params)
            return [tuple(row) for row in result.fetchall()] if result.returns_rows else []
    finally:
        await engine.dispose()


def test_body_bytes_is_backfilled_for_existing_events(empty_db_url: str) -> None:
    """Events stored before 0002 get their body size in bytes (not characters) on upgrade."""
    config = alembic_config(empty_db_url)
    command.upgrade(config, "0001")
    asyncio.run(
        _execute(
            empty_db_url,
            "INSERT INTO events (id, source, dedup_key, type, received_at, raw_body, headers,"
            " verified, is_test, duplicate_count)"
            " VALUES ('evt_1', 'webhook', 'k', 'training.started', :at, :body, '[]', true,"
            " false, 0)",
            at=datetime(2025, 11, 8, 14, tzinfo=UTC),
            body=BODY,
        )
    )
    command.upgrade(config, "head")
    rows = asyncio.run(_execute(empty_db_url, "SELECT body_bytes FROM events"))
    assert rows == [(len(BODY),)]
    assert len(BODY) != len(BODY.decode())
    command.downgrade(config, "base")


OLD_DEPLOYMENT_KEYS = [
    # (id, workspace, old key, type, job, key after 0013)
    ("evt_a", "default", f"sem:model.deployed:{MODEL_ID}", "model.deployed", "job-a",
     f"sem:model.deployed:job-a:{MODEL_ID}"),
    ("evt_b", "acme", "ws:acme:sem:deployment.created:dep-1", "deployment.created", "job-b",
     "ws:acme:sem:deployment.created:job-b:dep-1"),
    ("evt_c", "default", "sem:model.deployed:m-2", "model.deployed", None,
     "sem:model.deployed:m-2"),
    ("evt_d", "default", "sem:training.completed:job-a", "training.completed", "job-a",
     "sem:training.completed:job-a"),
    ("evt_e", "default", "id:evt-1", "model.deployed", "job-a", "id:evt-1"),
]  # fmt: skip


def _store_event(url: str, row: tuple[str, str, str, str, str | None], minute: int = 0) -> None:
    event_id, workspace, key, event_type, job_id = row
    asyncio.run(
        _execute(
            url,
            "INSERT INTO events (id, source, workspace, dedup_key, type, job_id, received_at,"
            " raw_body, body_bytes, headers, verified, is_test, duplicate_count)"
            " VALUES (:id, 'webhook', :workspace, :key, :type, :job, :at, :body, :size, '[]',"
            " true, false, 0)",
            id=event_id,
            workspace=workspace,
            key=key,
            type=event_type,
            job=job_id,
            at=datetime(2025, 11, 8, 15, minute, tzinfo=UTC),
            body=w3_deployed("job-a"),
            size=len(w3_deployed("job-a")),
        )
    )


def _store_old_events(url: str) -> None:
    for row in OLD_DEPLOYMENT_KEYS:
        _store_event(url, row[:5])


async def _retry_of_job_a(url: str) -> tuple[str, bool]:
    """LLMTune's re-stamped retry of job-a's deployment, through the ingest service."""
    engine = make_engine(url)
    try:
        async with contextlib.AsyncExitStack() as stack:
            ingest, _ = await make_ingest(single_engine_database(engine), stack)
            body = w3_deployed("job-a", at="2025-11-08T15:05:00.000Z")
            accepted = await ingest.accept(body, list(w3_headers(body).items()), source="webhook")
            return accepted.event_id, accepted.duplicate
    finally:
        await engine.dispose()


class TestDeploymentKeysPerJob:
    def test_upgrade_adds_the_job_and_old_events_still_dedupe(self, empty_db_url: str) -> None:
        """0013 rewrites deployment keys that have a job (scoped keys too), and a retry of an
        event stored before it is still a duplicate of that event."""
        config = alembic_config(empty_db_url)
        command.upgrade(config, "0012")
        _store_old_events(empty_db_url)
        command.upgrade(config, "head")
        rows = asyncio.run(_execute(empty_db_url, "SELECT id, dedup_key FROM events ORDER BY id"))
        assert rows == [(row[0], row[5]) for row in OLD_DEPLOYMENT_KEYS]
        assert asyncio.run(_retry_of_job_a(empty_db_url)) == ("evt_a", True)
        command.downgrade(config, "base")

    def test_downgrade_restores_the_old_keys(self, empty_db_url: str) -> None:
        """Down from 0013, the keys are the job-less ones again."""
        config = alembic_config(empty_db_url)
        command.upgrade(config, "0012")
        _store_old_events(empty_db_url)
        command.upgrade(config, "0013")
        command.downgrade(config, "0012")
        rows = asyncio.run(_execute(empty_db_url, "SELECT id, dedup_key FROM events ORDER BY id"))
        assert rows == [(row[0], row[2]) for row in OLD_DEPLOYMENT_KEYS]
        command.downgrade(config, "base")

    def test_keys_in_use_are_left_alone(self, empty_db_url: str) -> None:
        """A key another row already holds is not taken (up or down); the first stored wins."""
        config = alembic_config(empty_db_url)
        command.upgrade(config, "0012")
        _store_event(
            empty_db_url, ("evt_1", "default", "sem:model.deployed:m", "model.deployed", "j")
        )
        _store_event(
            empty_db_url, ("evt_2", "default", "sem:model.deployed:j:m", "model.deployed", None)
        )
        command.upgrade(config, "0013")
        _store_event(
            empty_db_url, ("evt_3", "default", "sem:model.deployed:k:m", "model.deployed", "k"), 1
        )
        command.downgrade(config, "0012")
        rows = asyncio.run(_execute(empty_db_url, "SELECT id, dedup_key FROM events ORDER BY id"))
        assert rows == [
            ("evt_1", "sem:model.deployed:m"),
            ("evt_2", "sem:model.deployed:j:m"),
            ("evt_3", "sem:model.deployed:k:m"),
        ]
        command.downgrade(config, "base")
