"""Unauthenticated probes: `/healthz` (alive), `/readyz` (store reachable, migrated), `/metrics`."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.errors import error_body
from service.jsonresponse import JSONResponse
from service.services import Services, services
from service.store.db import STORAGE_ERRORS

READY_TIMEOUT_SECONDS = 2.0


async def healthz(request: Request) -> Response:
    """The process is alive."""
    return JSONResponse({"status": "ok"})


async def _schema_revisions(svc: Services) -> set[str]:
    async with svc.engine.connect() as connection:
        await connection.execute(sa.text("SELECT 1"))
        rows = await connection.execute(sa.text("SELECT version_num FROM alembic_version"))
        return {row[0] for row in rows}


async def readyz(request: Request) -> Response:
    """200 when the store answers within 2 s and its schema is at this code's head, else 503."""
    svc = services(request)
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            revisions = await _schema_revisions(svc)
    except STORAGE_ERRORS as exc:
        detail = {"reason": "database_unreachable", "error": type(exc).__name__}
        return JSONResponse(
            error_body("STORAGE_UNAVAILABLE", "the database is not reachable", detail), 503
        )
    if revisions != set(svc.schema_heads):
        detail = {"reason": "migrations_pending", "expected": ",".join(sorted(svc.schema_heads))}
        return JSONResponse(
            error_body("STORAGE_UNAVAILABLE", "the database schema is not current", detail), 503
        )
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this app's registry."""
    registry = services(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
