"""Databases for the tests: one SQLite file and one PostgreSQL database per run, both migrated;
under pytest-xdist, one of each per worker process, so workers never see each other's rows.

Storage tests take `db_url` (or `engine`), which runs them once per database. PostgreSQL lives at
TEST_POSTGRES_URL; under CI a missing server fails the run, elsewhere it skips loudly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.store.migrate import upgrade
from tests.helpers import emptied_engine, empty_tables
from tests.pgdb import TEST_POSTGRES_URL, create_database, drop_database, temporary_database


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run (this xdist worker's), dropped at
    the end. The pid keeps runs of different checkouts on the same server apart."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"llmtune_test_{worker}_{os.getpid()}"
    try:
        url = create_database(TEST_POSTGRES_URL, name)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL is not reachable at {TEST_POSTGRES_URL}: {exc!r}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (required under CI)", pytrace=False)
        pytest.skip(f"{message}; storage tests ran on SQLite only")
    try:
        upgrade(url)
        yield url
    finally:
        drop_database(TEST_POSTGRES_URL, name)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite file for this test run."""
    path: Path = tmp_path_factory.mktemp("sqlite") / "receiver.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each storage test runs once on SQLite and once on PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A reachable database without any schema, on each kind of store."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    request.getfixturevalue("postgresql_url")  # skips or fails as the other PostgreSQL tests do
    with temporary_database("llmtune_empty") as url:
        yield url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the test database, emptied before the test and after it: a test that sealed
    rows (encryption at rest) must not leave them, or their key, to the next one."""
    engine = await emptied_engine(db_url)
    yield engine
    # Its pool closed, the same engine opens a fresh connection for the emptying: what a new
    # engine would give, without a second engine's set-up per test.
    await engine.dispose()
    await empty_tables(engine)
    await engine.dispose()


@pytest.fixture
async def exit_stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    """Async context managers a test enters (a running ingest writer, say), closed after it."""
    async with contextlib.AsyncExitStack() as stack:
        yield stack
