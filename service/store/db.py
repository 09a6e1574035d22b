"""Engine and session factories. Nothing is created at import: `create_app` and the CLI call these.

SQLite is tuned for durability (WAL, synchronous=FULL: an acknowledged event survives power loss)
and for failing fast: a locked database answers within 2 s so the caller can say 503 well inside
LLMTune's 5 s delivery timeout. asyncpg's default 60 s connect timeout is cut for the same reason.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# What "the store cannot answer right now" looks like from here: driver and pool errors wrapped
# by SQLAlchemy, refused or reset sockets, and timeouts. Callers map these to 503, never 500.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.SQLAlchemyError,
    OSError,
    TimeoutError,
)
CONNECT_TIMEOUT_SECONDS = 2.0
SQLITE_BUSY_TIMEOUT_MS = 2000


def describe_storage_error(exc: BaseException) -> str:
    """The driver's own first line, never SQLAlchemy's rendering (it carries the statement and
    its parameters, which hold bodies)."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause)
    return text.splitlines()[0][:200] if text else type(cause).__name__


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take over BEGIN from the driver (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    ):
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A deferred transaction that starts reading and then writes can fail at once with "database
    # is locked" when another connection committed in between (WAL snapshot); the busy timeout
    # does not help there. IMMEDIATE takes the write lock up front, waiting up to the timeout.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine for `database_url` with the timeouts and pragmas the service relies on."""
    if database_url.startswith("sqlite"):
        # SQLite has one writer: one pooled connection makes this process's transactions queue
        # in order (FIFO, bounded by pool_timeout) instead of racing for the file lock, where
        # the busy handler's polling can starve a waiter past any timeout.
        engine = create_async_engine(
            database_url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=CONNECT_TIMEOUT_SECONDS,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=CONNECT_TIMEOUT_SECONDS,
        connect_args={"timeout": CONNECT_TIMEOUT_SECONDS, "command_timeout": 10},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit (responses are built after it)."""
    return async_sessionmaker(engine, expire_on_commit=False)
