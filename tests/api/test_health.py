"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.store.migrate import alembic_config
from tests.helpers import make_settings, post_webhook, running_app, w3_body


async def test_healthz_and_readyz(engine: AsyncEngine, db_url: str) -> None:
    """A migrated, reachable database is ready."""
    async with running_app(make_settings(db_url), engine) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


async def test_readyz_refuses_an_unmigrated_database(empty_db_url: str) -> None:
    """A database without our schema is reachable but not ready (migrations pending)."""
    async with running_app(make_settings(empty_db_url)) as client:
        response = await client.get("/readyz")
        assert (await client.get("/healthz")).status_code == 200
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "STORAGE_UNAVAILABLE"
    assert error["details"]["reason"] == "migrations_pending"
    assert error["details"]["found"] == ""


@pytest.mark.postgresql
async def test_readyz_refuses_an_unreachable_database(unused_tcp_port: int) -> None:
    """Nothing listening at the database address: 503 within the 2 s budget."""
    settings = make_settings(f"postgresql+asyncpg://postgres@127.0.0.1:{unused_tcp_port}/x")
    async with running_app(settings) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["details"]["reason"] == "database_unreachable"


async def test_readyz_names_a_partly_migrated_database(tmp_path: Path) -> None:
    """A database behind this code's head says which revision it is at."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0001")
    async with running_app(make_settings(url)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    details = response.json()["error"]["details"]
    assert (details["reason"], details["found"]) == ("migrations_pending", "0001")


async def test_metrics_parse_and_include_process_metrics(engine: AsyncEngine, db_url: str) -> None:
    """/metrics answers without auth in the Prometheus text format (judged by prometheus-client's
    own parser), with our families and the process collector's."""
    async with running_app(make_settings(db_url), engine) as client:
        await post_webhook(client, w3_body())
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert families["llmtune_webhooks_received"].type == "counter"
    assert families["llmtune_webhook_ingest_seconds"].type == "histogram"
    assert families["llmtune_webhook_body_read_seconds"].type == "histogram"
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    assert families["process_open_fds"].samples[0].value > 0
    assert "python_info" in families
    [stored] = [
        sample
        for sample in families["llmtune_webhooks_received"].samples
        if sample.name == "llmtune_webhooks_received_total"
    ]
    assert (stored.labels, stored.value) == (
        {"event_type": "training.completed", "outcome": "stored"},
        1.0,
    )


async def test_readyz_stays_ready_on_a_newer_schema(tmp_path: Path) -> None:
    """During a rolling release the new migration runs before old processes are replaced: a
    revision this code does not know is newer, and the old process stays ready."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'newer.db'}"
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    await engine.dispose()
    async with running_app(make_settings(url)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "schema": "newer"}
