"""The app factory. `create_app` wires routes, middleware and error handling; the lifespan owns
the database and everything built on it, and hands them to routes as `request.state.services`.

`uvicorn --factory service.app:create_app` works: called bare, it loads Settings itself.
Migrations are not run here (the CLI runs them before the server starts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from service.bootstrap import Overrides, built_services, tracing_for
from service.config import Settings, load_settings
from service.http import probes, webhooks
from service.http.admin.routes import ROUTES as ADMIN_ROUTES
from service.http.console.routes import ROUTES as CONSOLE_ROUTES
from service.http.errors import EXCEPTION_HANDLERS
from service.http.header_limit import HeaderLimitMiddleware
from service.http.requestlog import RequestLogMiddleware
from service.http.route_template import route_name
from service.logs import configure_logging

__all__ = ["Overrides", "create_app"]


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
    # Made here so the app can be instrumented before it serves; the lifespan's services end it.
    tracing = tracing_for(settings, chosen)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with built_services(settings, chosen, role="web", tracing=tracing) as svc:
            yield {"services": svc}

    app = ReceiverApp(
        routes=[*webhooks.ROUTES, *ADMIN_ROUTES, *CONSOLE_ROUTES, *probes.ROUTES],
        exception_handlers=EXCEPTION_HANDLERS,
        # Inside the request log (the 431 gets its line), before routing and any endpoint.
        middleware=[Middleware(HeaderLimitMiddleware, limit=settings.max_header_bytes)],
        lifespan=lifespan,
    )
    # A redirect to the slash-less path would be an empty 307 that a sender counts as failure.
    app.router.redirect_slashes = False
    if tracing is not None:
        tracing.instrument_app(app, route_name)
    return app
