"""The `engine` fixture's clean slate: every table the migrations make is emptied between tests."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import TABLES


async def test_every_migrated_table_is_emptied(engine: AsyncEngine) -> None:
    """`TABLES` (from the metadata) names every table at the migrations' head, so a table a
    migration adds cannot keep one test's rows for the next."""
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    assert set(names) - {"alembic_version"} == set(TABLES)
