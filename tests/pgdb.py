"""Create and drop throwaway PostgreSQL databases, for the tests and for .ci/check-migrations.

`python -m tests.pgdb create|drop ADMIN_URL NAME`; `create` prints the new database's URL.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from sqlalchemy.engine import make_url

# Where the tests create their databases (trust auth on the local server by default).
TEST_POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def database_url(admin_url: str, name: str) -> str:
    """`admin_url` pointed at database `name`."""
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def _execute(admin_url: str, statement: str) -> None:
    dsn = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn=dsn, timeout=3)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_database(admin_url: str, name: str) -> str:
    """Create database `name` (outside any transaction) and return its URL."""
    asyncio.run(_execute(admin_url, f'CREATE DATABASE "{name}"'))
    return database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name`, disconnecting whoever is still on it."""
    asyncio.run(_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def temporary_database(prefix: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    name = f"{prefix}_{os.getpid()}"
    url = create_database(TEST_POSTGRES_URL, name)
    try:
        yield url
    finally:
        drop_database(TEST_POSTGRES_URL, name)


if __name__ == "__main__":
    action, admin, db_name = sys.argv[1:4]
    if action == "create":
        print(create_database(admin, db_name))
    else:
        drop_database(admin, db_name)
