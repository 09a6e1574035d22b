"""PostgreSQL LISTEN for the dispatch worker: other processes' `pg_notify` at enqueue wakes it.

Holds one connection for as long as it listens. If that connection drops, notifications stop
and the worker's poll carries on alone; the next start listens again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from service.store.db import STORAGE_ERRORS
from service.store.deliveries import NOTIFY_CHANNEL


@asynccontextmanager
async def listening(engine: AsyncEngine, wake: Callable[[], None]) -> AsyncIterator[bool]:
    """Call `wake` on every notification while inside; yields False where there is no LISTEN
    (SQLite) or it could not be set up."""
    if engine.dialect.name != "postgresql":
        yield False
        return

    def on_notify(*_: Any) -> None:
        wake()

    try:
        connection = await engine.connect()
    except STORAGE_ERRORS:
        yield False
        return
    try:
        raw = (await connection.get_raw_connection()).driver_connection
        if raw is None:
            raise OSError("no driver connection")
        await raw.add_listener(NOTIFY_CHANNEL, on_notify)
    except (*STORAGE_ERRORS, asyncpg.PostgresError, asyncpg.InterfaceError):
        with contextlib.suppress(*STORAGE_ERRORS):
            await connection.close()
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(*STORAGE_ERRORS):
            await connection.close()
