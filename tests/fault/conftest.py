"""Fixtures of the fault tests: a migrated PostgreSQL database of the test's own (dropped after
it), and the processes the test starts (stopped by pid and reaped before the drop)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from service.store.migrate import upgrade
from tests.fault.processes import Processes
from tests.pgdb import temporary_database

_numbers = itertools.count()


@pytest.fixture
def fault_db(postgresql_url: str) -> Iterator[str]:
    """A fresh database at the migrations' head on the test server; dropped (FORCE) after.

    `postgresql_url` (unused here) skips these tests without PostgreSQL, or fails them under CI,
    as every other PostgreSQL test does.
    """
    with temporary_database(f"llmtune_fault_{next(_numbers)}") as url:
        upgrade(url)
        yield url


@pytest.fixture
async def processes(fault_db: str, tmp_path: Path) -> AsyncIterator[Processes]:
    """The test's processes (logs in tmp_path); whatever still runs at the end is stopped."""
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        await started.stop_all()
