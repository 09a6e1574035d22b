"""What the commands that open the database or start the service share: migrations, the routes
and keys checks. The light rest (settings, exits, batch bounds) is in `basics.py`."""

from __future__ import annotations

import asyncio
import sys

import httpx
import structlog

from service.bootstrap import Overrides, check_stored_keys, configured_routes, llmtune_client
from service.clock import SystemClock
from service.config import Settings, database_location
from service.dispatch.routes_file import RoutesError
from service.events import DEFAULT_WORKSPACE, Source
from service.handlers.base import HandlerDeps, InferenceDeps
from service.handlers.registry import RouteError, available, build_handlers
from service.ports import EmittedEvent
from service.routing import Subscription
from service.store import migrate
from service.store.db import (
    STORAGE_ERRORS,
    StoreUnavailable,
    describe_storage_error,
    open_database,
)
from service.store.inference_runs import StoredRuns
from service.store.keys import KeyCheckFailed
from service.store.memory import StoredMemory
from service.store.migrate import Upgraded
from service.store.schema import SchemaMissing, schema_revisions

log = structlog.get_logger("service.cli")

# SQLite's busy handler retries a waiting writer about every 100 ms: a pause a little longer
# between batches lets the service's ingest in instead of it timing out behind a bulk command.
SQLITE_PAUSE_SECONDS = 0.15


def apply_migrations(settings: Settings, *, quiet: bool = False) -> Upgraded | None:
    """Apply migrations and log one summary line (`quiet`: Alembic's own lines left out); on
    failure print one line naming the database (no traceback) and return None."""
    try:
        done = migrate.upgrade(settings.database_url, quiet=quiet)
    except STORAGE_ERRORS as exc:
        reason = describe_storage_error(exc)
        where = database_location(settings.database_url)
        print(f"llmtune-receiver: cannot apply migrations to {where}: {reason}", file=sys.stderr)
        return None
    log.info("migrations", schema=done.schema, applied=done.applied, summary=done.summary())
    return done


def schema_current_or_explain(settings: Settings) -> str | None:
    """None when the database is at this code's migration head (or newer); else one line
    saying what is wrong and what to run."""
    return asyncio.run(_schema_problem(settings))


async def _schema_problem(settings: Settings) -> str | None:
    db = open_database(settings.database_url)
    where = database_location(settings.database_url)
    try:
        found = await schema_revisions(db)
    except SchemaMissing:
        found = frozenset()
    except StoreUnavailable as exc:
        # A SQLite file that cannot be opened stays so; a PostgreSQL server may come back, and
        # the worker and the server retry it.
        return f"cannot open {where}: {exc}" if settings.is_sqlite else None
    finally:
        await db.aclose()
    if found and not found & migrate.known_revisions():
        return None  # a newer release migrated ahead; migrations only add
    if found == migrate.heads():
        return None
    at = ",".join(sorted(found)) or "none"
    return (
        f"{where} is not migrated (schema {at}, this code needs "
        f"{','.join(sorted(migrate.heads()))}): run `llmtune-receiver migrate`"
    )


def routes_usable(settings: Settings) -> bool:
    """Check the routes file and every route's handler options before anything starts."""
    try:
        routes = configured_routes(settings, Overrides()).routes
        asyncio.run(_build_handlers_once(settings, routes))
    except RoutesError as exc:
        print(f"llmtune-receiver: routes: {exc}", file=sys.stderr)
        return False
    except RouteError as exc:
        where = f"{settings.routes_file}: " if settings.routes_file else ""
        print(f"llmtune-receiver: routes: {where}{exc}", file=sys.stderr)
        return False
    return True


def keys_usable(settings: Settings) -> bool:
    """Check ENCRYPTION_KEYS against the stored data (its canaries) before anything starts."""
    try:
        asyncio.run(_check_keys_once(settings))
    except KeyCheckFailed as exc:
        print(f"llmtune-receiver: {exc}", file=sys.stderr)
        return False
    except StoreUnavailable as exc:
        # Raised only with keys set (without, the check is skipped while the store is down).
        print(f"llmtune-receiver: cannot check ENCRYPTION_KEYS: {exc}", file=sys.stderr)
        return False
    return True


async def _check_keys_once(settings: Settings) -> None:
    db = open_database(settings.database_url)
    try:
        await check_stored_keys(db, settings.keyring(), SystemClock())
    finally:
        await db.aclose()


async def _build_handlers_once(settings: Settings, routes: tuple[Subscription, ...]) -> None:
    # The same dependencies the service gives handlers; the database is opened but, as no
    # handler is called here, never connected to.
    db = open_database(settings.database_url)
    clock = SystemClock()
    try:
        async with httpx.AsyncClient() as http:
            llmtune = llmtune_client(settings, http)
            deps = HandlerDeps(
                http=http,
                clock=clock,
                public_url=settings.public_url,
                memory=StoredMemory(db, clock),
                inference=None
                if llmtune is None
                else InferenceDeps(llmtune, StoredRuns(db, clock), _not_emitted),
            )
            build_handlers(routes, deps, available())
    finally:
        await db.aclose()


async def _not_emitted(
    body: bytes, *, source: Source = "internal", workspace: str = DEFAULT_WORKSPACE
) -> EmittedEvent:
    # Handlers built to check the routes file are never called, so nothing is ever emitted.
    raise AssertionError("a handler built for the routes check was called")  # pragma: no cover
