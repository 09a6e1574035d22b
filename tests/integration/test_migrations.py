"""Migrations on data that already exists, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from service.store.db import make_engine
from service.store.migrate import alembic_config
from tests.pgdb import temporary_database

BODY = '{"event":"training.started","data":{"jobId":"jö"}}'.encode()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    request.getfixturevalue("postgresql_url")  # skips or fails as the other PostgreSQL tests do
    with temporary_database("llmtune_migrate") as url:
        yield url


async def _execute(url: str, statement: str, **params: object) -> list[tuple[Any, ...]]:
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(sa.text(statement), params)
            return [tuple(row) for row in result.fetchall()] if result.returns_rows else []
    finally:
        await engine.dispose()


def test_body_bytes_is_backfilled_for_existing_events(fresh_url: str) -> None:
    """Events stored before 0002 get their body size in bytes (not characters) on upgrade."""
    config = alembic_config(fresh_url)
    command.upgrade(config, "0001")
    asyncio.run(
        _execute(
            fresh_url,
            "INSERT INTO events (id, source, dedup_key, type, received_at, raw_body, headers,"
            " verified, is_test, duplicate_count)"
            " VALUES ('evt_1', 'webhook', 'k', 'training.started', :at, :body, '[]', true,"
            " false, 0)",
            at=datetime(2025, 11, 8, 14, tzinfo=UTC),
            body=BODY,
        )
    )
    command.upgrade(config, "head")
    rows = asyncio.run(_execute(fresh_url, "SELECT body_bytes FROM events"))
    assert rows == [(len(BODY),)]
    assert len(BODY) != len(BODY.decode())
    command.downgrade(config, "base")
