"""Unauthenticated probes: `/healthz` (alive), `/readyz` (store reachable, migrated), `/metrics`."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.http.context import services
from service.http.errors import storage_unavailable
from service.http.responses import JSONResponse
from service.store.db import StoreUnavailable
from service.store.schema import SchemaMissing, schema_revisions

READY_TIMEOUT_SECONDS = 2.0


async def healthz(request: Request) -> Response:
    """The process is alive."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 when the store answers within 2 s and its schema is at this code's head (or newer:
    a rolling release has migrated ahead of this process), else 503."""
    svc = services(request)
    expected = svc.schema_heads
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            revisions = await schema_revisions(svc.db)
    except (StoreUnavailable, TimeoutError) as exc:
        detail = {"reason": "database_unreachable", "error": type(exc).__name__}
        return storage_unavailable("the database is not reachable", detail)
    except SchemaMissing:
        revisions = frozenset()
    if revisions and not revisions & svc.schema_known:
        # A release's migration ran before this (older) process was replaced; migrations only
        # add, so it keeps serving until it is.
        return JSONResponse({"status": "ready", "schema": "newer"})
    if revisions != expected:
        detail = {
            "reason": "migrations_pending",
            "expected": ",".join(sorted(expected)),
            "found": ",".join(sorted(revisions)),
        }
        return storage_unavailable("the database schema is not current", detail)
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
