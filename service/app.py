"""The app factory. `create_app` wires routes, middleware and error handling; the lifespan owns
the database and everything built on it, and hands them to routes as `request.state.services`.

`uvicorn --factory service.app:create_app` works: called bare, it loads Settings itself.
Migrations are not run here (the CLI runs them before the server starts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.types import ASGIApp

from service.clock import Clock, SystemClock
from service.config import Settings, load_settings
from service.dispatch.routing import DEFAULT_ROUTES
from service.http import probes, webhooks
from service.http.admin.routes import ROUTES as ADMIN_ROUTES
from service.http.errors import EXCEPTION_HANDLERS
from service.http.requestlog import RequestLogMiddleware
from service.ingest import Ingest
from service.logs import configure_logging
from service.metrics import Metrics
from service.services import Services
from service.store.db import Database, open_database
from service.store.migrate import heads
from service.store.writer import IngestWriter
from service.webhooks.verify import signing_keys

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Overrides:
    """Parts a test (or an embedding program) supplies instead of the defaults."""

    engine: AsyncEngine | None = None
    clock: Clock | None = None
    writer: IngestWriter | None = None


def _warn_about_secrets(settings: Settings) -> None:
    if settings.webhook_allow_unsigned:
        log.warning(
            "unsigned_webhooks_allowed",
            message="WEBHOOK_ALLOW_UNSIGNED is on: unsigned deliveries are stored (dev only)",
        )
    elif not settings.webhook_secrets:
        log.warning(
            "no_webhook_secret",
            message="WEBHOOK_SECRETS is empty: every webhook will be refused with 401",
        )


def build_services(settings: Settings, overrides: Overrides, db: Database) -> Services:
    """Everything routes need, built from settings plus any overrides."""
    _warn_about_secrets(settings)
    metrics = Metrics()
    clock = overrides.clock or SystemClock()
    writer = overrides.writer or IngestWriter(db, DEFAULT_ROUTES)
    ingest = Ingest(
        writer,
        keys=signing_keys([secret.get_secret_value() for secret in settings.webhook_secrets]),
        allow_unsigned=settings.webhook_allow_unsigned,
        metrics=metrics,
        clock=clock,
    )
    return Services(
        settings=settings,
        db=db,
        ingest=ingest,
        admin_tokens=tuple(t.get_secret_value().encode() for t in settings.admin_tokens),
        metrics=metrics,
        clock=clock,
        schema_heads=heads(),
    )


class ReceiverApp(Starlette):
    """Starlette with the request-log middleware outside everything, error handling included,
    so the line written for an unexpected 500 still carries the request id."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestLogMiddleware(super().build_middleware_stack())


def create_app(
    settings: Settings | None = None, *, overrides: Overrides | None = None
) -> Starlette:
    """The ASGI application. Called bare (uvicorn's factory, also in each `--workers` process),
    it loads Settings and configures logging itself; callers passing settings own logging."""
    if settings is None:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
    chosen = overrides or Overrides()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        db = open_database(settings.database_url, engine=chosen.engine)
        try:
            yield {"services": build_services(settings, chosen, db)}
        finally:
            if db.read_engine is not db.engine:
                await db.read_engine.dispose()
            if chosen.engine is None:
                await db.engine.dispose()

    app = ReceiverApp(
        routes=[*webhooks.ROUTES, *ADMIN_ROUTES, *probes.ROUTES],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    # A redirect to the slash-less path would be an empty 307 that a sender counts as failure.
    app.router.redirect_slashes = False
    return app
