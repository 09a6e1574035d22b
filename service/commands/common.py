"""What the commands that open the database or start the service share: migrations, the routes
and keys checks. The light rest (settings, exits, batch bounds) is in `basics.py`."""

from __future__ import annotations

import asyncio
import sys

import httpx
import structlog

from service.bootstrap import Overrides, check_stored_keys, configured_routes, llmtune_client
from service.clock import SystemClock
from service.config import Settings
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

log = structlog.get_logger("service.cli")

# SQLite's busy handler retries a waiting writer about every 100 ms: a pause a little longer
# between batches lets the service's ingest in instead of it timing out behind a bulk command.
SQLITE_PAUSE_SECONDS = 0.15


def apply_migrations(settings: Settings) -> bool:
    """Apply migrations; on failure print one line (no traceback) and return False."""
    try:
        migrate.upgrade(settings.database_url)
    except STORAGE_ERRORS as exc:
        reason = describe_storage_error(exc)
        print(f"llmtune-receiver: cannot apply migrations: {reason}", file=sys.stderr)
        return False
    log.info("migrations_applied")
    return True


def routes_usable(settings: Settings) -> bool:
    """Check the routes file and every route's handler options before anything starts."""
    try:
        routes = configured_routes(settings, Overrides()).routes
        asyncio.run(_build_handlers_once(settings, routes))
    except (RoutesError, RouteError) as exc:
        print(f"llmtune-receiver: routes: {exc}", file=sys.stderr)
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
