"""Migrations on data that already exists, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command

from service.store.db import make_engine
from service.store.migrate import alembic_config

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
