"""Engines, sessions and units of work. Nothing is created at import: `create_app` and the CLI
call these.

SQLite is tuned for durability (WAL, synchronous=FULL: an acknowledged event survives power loss)
and for failing fast: a locked database answers within 2 s so the caller can say 503 well inside
LLMTune's 5 s delivery timeout. asyncpg's default 60 s connect timeout is cut for the same reason.
On SQLite, writes queue on one connection (`BEGIN IMMEDIATE`) while reads use connections of
their own with a plain deferred `BEGIN`, which WAL lets run beside the writer.

Every failure to reach the store leaves this package as `StoreUnavailable`; the HTTP edge maps
it to 503. A connection the server dropped (restart, failover, `pg_terminate_backend`) is retried
once on a fresh connection, so the first request after a healthy restart does not fail.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import sqlalchemy.exc
import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.store.sealing import PLAINTEXT, Sealer

log = structlog.get_logger(__name__)
T = TypeVar("T")

# What "the store cannot answer right now" looks like from here: driver and pool errors wrapped
# by SQLAlchemy, refused or reset sockets, and timeouts. Callers map these to 503, never 500.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.SQLAlchemyError,
    OSError,
    TimeoutError,
)
# Errors that mean "the database answered, and refused this data": worth retrying row by row.
# Everything else reaching the store (connection refused, reset, timed out, locked) is the store
# being unavailable, and retrying each row would only multiply the wait.
_REFUSED = (sqlalchemy.exc.StatementError,)
_UNREACHABLE = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
CONNECT_TIMEOUT_SECONDS = 2.0
SQLITE_BUSY_TIMEOUT_MS = 2000
SQLITE_READERS = 4


class StoreUnavailable(Exception):
    """The store cannot answer right now (unreachable, locked, failing); retrying later may work."""


class SchemaNotMigrated(StoreUnavailable):
    """The database answers but lacks our tables: `llmtune-receiver migrate` was not run."""


# SQLite's and PostgreSQL's words for a table that is not there.
_MISSING_TABLE = re.compile(r"no such table: (\S+)|relation \"([^\"]+)\" does not exist")
# Said once per process: a server or worker polling an unmigrated database would otherwise log
# the same warning every second.
_told_not_migrated: set[str] = set()


def _not_migrated(exc: BaseException) -> SchemaNotMigrated | None:
    found = _MISSING_TABLE.search(describe_storage_error(exc))
    if found is None:
        return None
    table = found.group(1) or found.group(2)
    if table not in _told_not_migrated:
        _told_not_migrated.add(table)
        log.warning(
            "database_not_migrated",
            table=table,
            message=f"no table {table}: run `llmtune-receiver migrate`",
        )
    return SchemaNotMigrated(f"the database is not migrated (no table {table})")


def describe_storage_error(exc: BaseException) -> str:
    """The driver's own first line, never SQLAlchemy's rendering (it carries the statement and
    its parameters, which hold bodies)."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause)
    return text.splitlines()[0][:200] if text else type(cause).__name__


def _json_text(value: Any) -> str:
    # orjson, like the rest of the service: JSON columns (headers, metrics) are written on
    # every ingest.
    return orjson.dumps(value).decode()


def refused(exc: BaseException) -> bool:
    """True when the database answered and refused the data of a batch (not when it was
    unreachable): its rows are worth retrying one by one."""
    if isinstance(exc, StoreUnavailable):
        cause = exc.__cause__
        return (
            isinstance(cause, _REFUSED)
            and not isinstance(cause, _UNREACHABLE)
            and not getattr(cause, "connection_invalidated", False)
        )
    return True  # not a storage error at all: a bug in one row's values, most likely


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


def _sqlite_read_connect(dbapi_connection: Any, record: Any) -> None:
    _sqlite_connect(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _sqlite_read_begin(connection: Any) -> None:
    # Deferred: a WAL reader takes no lock, so it never waits behind the writer's queue.
    connection.exec_driver_sql("BEGIN")


def is_sqlite(url: str) -> bool:
    """True for the embedded SQLite store."""
    return url.startswith("sqlite")


def _sqlite_engine(
    database_url: str, *, pool_size: int, on_connect: Any, on_begin: Any
) -> AsyncEngine:
    engine = create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=CONNECT_TIMEOUT_SECONDS,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
    )
    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)
    return engine


def make_read_engine(database_url: str) -> AsyncEngine | None:
    """On SQLite, a pool of read-only connections beside the single writer; elsewhere None (the
    one engine serves reads and writes)."""
    if not is_sqlite(database_url):
        return None
    return _sqlite_engine(
        database_url,
        pool_size=SQLITE_READERS,
        on_connect=_sqlite_read_connect,
        on_begin=_sqlite_read_begin,
    )


def make_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine for `database_url` with the timeouts and pragmas the service relies on."""
    if is_sqlite(database_url):
        # SQLite has one writer: one pooled connection makes this process's transactions queue
        # in order (FIFO, bounded by pool_timeout) instead of racing for the file lock, where
        # the busy handler's polling can starve a waiter past any timeout.
        return _sqlite_engine(
            database_url, pool_size=1, on_connect=_sqlite_connect, on_begin=_sqlite_begin
        )
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=CONNECT_TIMEOUT_SECONDS,
        # The most recently used connection first: the ingest writer's statements stay prepared
        # on the few connections it keeps using, instead of being prepared again on each.
        pool_use_lifo=True,
        connect_args={"timeout": CONNECT_TIMEOUT_SECONDS, "command_timeout": 10},
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit (responses are built after it)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _dropped_connection(exc: BaseException) -> bool:
    # SQLAlchemy flags a disconnect it detected; it has already invalidated the pool's older
    # connections, so a second try gets a fresh one.
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated


async def retry_dropped(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work`; once more if the server had dropped the connection; `StoreUnavailable` on any
    storage failure. Only for work that is safe to repeat (ours is: writes are idempotent)."""
    for attempt in (1, 2):
        try:
            return await work()
        except STORAGE_ERRORS as exc:
            if attempt == 1 and _dropped_connection(exc):
                log.info("store_connection_dropped", cause=describe_storage_error(exc))
                continue
            if missing := _not_migrated(exc):
                raise missing from exc
            log.warning(
                "store_unavailable",
                error_type=type(exc).__name__,
                cause=describe_storage_error(exc),
            )
            raise StoreUnavailable(describe_storage_error(exc)) from exc
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Database:
    """The store's engines and session factories; reads and writes separated on SQLite."""

    engine: AsyncEngine
    read_engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]
    # How sensitive columns are kept: sealed under ENCRYPTION_KEYS, or in clear.
    sealer: Sealer = PLAINTEXT
    # The engines made for this Database, closed by `aclose`; one handed in stays its maker's.
    owned: tuple[AsyncEngine, ...] = ()

    async def aclose(self) -> None:
        """Close the engines this Database made (their pooled connections)."""
        for engine in self.owned:
            await engine.dispose()

    async def write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` in one write transaction and commit (see `retry_dropped`)."""
        return await _in_transaction(self.sessions, work)

    async def write_on_connection(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `work` on a Core connection in one write transaction and commit: cheaper than a
        session where plain statements do (the worker's hot path; see `retry_dropped`)."""

        async def attempt() -> T:
            async with self.engine.begin() as conn:
                return await work(conn)

        return await retry_dropped(attempt)

    async def write_one_statement(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`write_on_connection` for work that runs one statement on PostgreSQL: there it runs
        without BEGIN and COMMIT (one statement is atomic alone), two round trips fewer.
        SQLite keeps its `BEGIN IMMEDIATE` transaction."""
        if self.engine.dialect.name == "sqlite":
            return await self.write_on_connection(work)

        async def attempt() -> T:
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await work(conn)

        return await retry_dropped(attempt)

    async def read(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` in a read transaction on a reader connection (see `retry_dropped`)."""
        return await _in_transaction(self.read_sessions, work)


async def _in_transaction(
    sessions: async_sessionmaker[AsyncSession], work: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    async def attempt() -> T:
        async with sessions() as session, session.begin():
            return await work(session)

    return await retry_dropped(attempt)


def open_database(
    database_url: str,
    *,
    engine: AsyncEngine | None = None,
    sealer: Sealer = PLAINTEXT,
    pool_size: int = 10,
) -> Database:
    """The `Database` for `database_url`, around `engine` when one is given; `aclose` closes
    only the engines made here."""
    made = [] if engine is not None else [make_engine(database_url, pool_size=pool_size)]
    writer = engine or made[0]
    reader = make_read_engine(database_url)
    if reader is not None:
        made.append(reader)
    read_engine = reader or writer
    return Database(
        engine=writer,
        read_engine=read_engine,
        sessions=make_sessionmaker(writer),
        read_sessions=make_sessionmaker(read_engine),
        sealer=sealer,
        owned=tuple(made),
    )
