"""The app factory. `create_app` wires routes, middleware and error handling; the lifespan owns
the engine and everything built on it, and hands them to routes as `request.state.services`.

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
from starlette.middleware import Middleware
from starlette.routing import Route

from service import health
from service.admin.routes import ROUTES as ADMIN_ROUTES
from service.clock import Clock, SystemClock
from service.config import Settings, load_settings
from service.dispatch.routing import DEFAULT_ROUTES
from service.errors import EXCEPTION_HANDLERS
from service.logs import configure_logging
from service.metrics import Metrics
from service.requestlog import RequestLogMiddleware
from service.services import Services
from service.store.db import make_engine, make_sessionmaker
from service.store.ingest import IngestWriter
from service.store.migrate import heads
from service.webhooks.ingest import receive_webhook
from service.webhooks.verify import signing_keys

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Overrides:
    """Parts a test (or an embedding program) supplies instead of the defaults."""

    engine: AsyncEngine | None = None
    clock: Clock | None = None


def build_services(settings: Settings, overrides: Overrides) -> Services:
    """Everything routes need, built from settings plus any overrides."""
    engine = overrides.engine or make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    secrets = [secret.get_secret_value() for secret in settings.webhook_secrets]
    if settings.webhook_allow_unsigned:
        log.warning(
            "unsigned_webhooks_allowed",
            message="WEBHOOK_ALLOW_UNSIGNED is on: unsigned deliveries are stored (dev only)",
        )
    elif not secrets:
        log.warning(
            "no_webhook_secret",
            message="WEBHOOK_SECRETS is empty: every webhook will be refused with 401",
        )
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        writer=IngestWriter(sessions, DEFAULT_ROUTES),
        signing_keys=signing_keys(secrets),
        admin_tokens=tuple(t.get_secret_value().encode() for t in settings.admin_tokens),
        metrics=Metrics(),
        clock=overrides.clock or SystemClock(),
        schema_heads=heads(),
    )


def create_app(
    settings: Settings | None = None, *, overrides: Overrides | None = None
) -> Starlette:
    """The ASGI application. Called bare (uvicorn's factory, also in each `--workers` process),
    it loads Settings and configures logging itself; callers passing settings own logging."""
    if settings is None:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
    overrides = overrides or Overrides()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        svc = build_services(settings, overrides)
        try:
            yield {"services": svc}
        finally:
            if overrides.engine is None:
                await svc.engine.dispose()

    return Starlette(
        routes=[
            Route("/webhooks/llmtune", receive_webhook, methods=["POST"]),
            *ADMIN_ROUTES,
            *health.ROUTES,
        ],
        middleware=[Middleware(RequestLogMiddleware)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
