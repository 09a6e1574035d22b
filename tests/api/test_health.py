"""/healthz, /readyz and /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import make_settings, running_app
from tests.pgdb import temporary_database


async def test_healthz_and_readyz(engine: AsyncEngine, db_url: str) -> None:
    """A migrated, reachable database is ready."""
    async with running_app(make_settings(db_url), engine) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A reachable database without any schema, on each kind of store."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    request.getfixturevalue("postgresql_url")  # skips or fails as the other PostgreSQL tests do
    with temporary_database("llmtune_empty") as url:
        yield url


async def test_readyz_refuses_an_unmigrated_database(empty_db_url: str) -> None:
    """A database without our schema is reachable but not ready (migrations pending)."""
    async with running_app(make_settings(empty_db_url)) as client:
        response = await client.get("/readyz")
        assert (await client.get("/healthz")).status_code == 200
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "STORAGE_UNAVAILABLE"


@pytest.mark.postgresql
async def test_readyz_refuses_an_unreachable_database(unused_tcp_port: int) -> None:
    """Nothing listening at the database address: 503 within the 2 s budget."""
    settings = make_settings(f"postgresql+asyncpg://postgres@127.0.0.1:{unused_tcp_port}/x")
    async with running_app(settings) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["details"]["reason"] == "database_unreachable"


async def test_metrics_are_prometheus_text(engine: AsyncEngine, db_url: str) -> None:
    """/metrics answers without auth, in the Prometheus text format."""
    async with running_app(make_settings(db_url), engine) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE llmtune_webhooks_received_total counter" in response.text
