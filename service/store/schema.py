"""Which migration revisions the database is at (for `/readyz`), told apart from "unreachable"."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.db import Database

VERSION_TABLE = "alembic_version"


class SchemaMissing(Exception):
    """The database answers but has no migration table: nothing was ever migrated."""


async def schema_revisions(db: Database) -> frozenset[str]:
    """The revisions recorded in the database; `SchemaMissing` when it was never migrated,
    `StoreUnavailable` when it cannot be asked."""

    async def read(session: AsyncSession) -> frozenset[str] | None:
        connection = await session.connection()
        # Asking for the table first, rather than reading it and catching the error: a failed
        # statement looks the same as an unreachable server from here.
        has_table = await connection.run_sync(
            lambda sync: sa.inspect(sync).has_table(VERSION_TABLE)
        )
        if not has_table:
            return None
        rows = await session.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608
        return frozenset(row[0] for row in rows)

    found = await db.read(read)
    if found is None:
        raise SchemaMissing(VERSION_TABLE)
    return found
