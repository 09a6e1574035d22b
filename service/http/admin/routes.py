"""Read-only admin API: events and jobs, behind Bearer tokens, in camelCase JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.http.admin import params, schemas
from service.http.admin.auth import require_admin
from service.http.context import services
from service.http.errors import NotFound
from service.http.responses import JSONResponse
from service.ids import looks_like_id
from service.services import Services
from service.store import deliveries, events, jobs
from service.store.events import EventFilter
from service.store.paging import Page, encode_cursor

Endpoint = Callable[[Request, Services], Awaitable[Any]]


def admin(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an endpoint with the token check and JSON rendering."""

    async def wrapped(request: Request) -> Response:
        svc = services(request)
        require_admin(request, svc.admin_tokens)
        return JSONResponse(await endpoint(request, svc))

    wrapped.__name__ = endpoint.__name__
    wrapped.__doc__ = endpoint.__doc__
    return wrapped


def _path_id(request: Request, name: str, kind: str) -> str:
    value: str = request.path_params[name]
    # Not one of our ids: 404 without a query (a NUL byte would make PostgreSQL refuse it).
    if not looks_like_id(value):
        raise NotFound(f"no {kind} {value[:64]!r}")
    return value


def _page(page: Page[Any], render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    cursor = encode_cursor(page.next_key) if page.next_key else None
    return {"items": [render(row) for row in page.items], "nextCursor": cursor}


async def list_events(request: Request, svc: Services) -> dict[str, Any]:
    """Events, newest first, filtered by type, jobId, duplicate, test, since, until."""
    query = request.query_params
    where = EventFilter(
        type=params.text_param(query, "type"),
        job_id=params.text_param(query, "jobId"),
        duplicate=params.bool_param(query, "duplicate"),
        test=params.bool_param(query, "test"),
        since=params.time_param(query, "since"),
        until=params.time_param(query, "until"),
    )
    limit, cursor = params.limit_param(query), params.cursor_param(query)
    page = await svc.db.read(
        lambda session: events.list_events(session, where=where, limit=limit, cursor=cursor)
    )
    return _page(page, schemas.event_summary)


async def get_event(request: Request, svc: Services) -> dict[str, Any]:
    """One event with payload, raw body, redacted headers and deliveries."""
    event_id = _path_id(request, "event_id", "event")

    async def read(session: AsyncSession) -> dict[str, Any]:
        row = await events.get_event(session, event_id)
        if row is None:
            raise NotFound(f"no event {event_id!r}")
        return schemas.event_detail(row, await deliveries.deliveries_of(session, [row.id]))

    return await svc.db.read(read)


async def list_jobs(request: Request, svc: Services) -> dict[str, Any]:
    """Jobs, newest first, optionally filtered by status."""
    query = request.query_params
    limit, cursor = params.limit_param(query), params.cursor_param(query)
    status = params.text_param(query, "status")
    page = await svc.db.read(
        lambda session: jobs.list_jobs(session, status=status, limit=limit, cursor=cursor)
    )
    return _page(page, schemas.job_summary)


async def get_job(request: Request, svc: Services) -> dict[str, Any]:
    """One job with its timeline of events and their deliveries."""
    job_id = _path_id(request, "job_id", "job")

    async def read(session: AsyncSession) -> dict[str, Any]:
        row = await jobs.get_job(session, job_id)
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        timeline = await events.events_of_job(session, row.llmtune_job_id)
        rows = await deliveries.deliveries_of(session, [event.id for event in timeline])
        return {
            **schemas.job_summary(row),
            "events": [schemas.event_summary(event) for event in timeline],
            "deliveries": [schemas.delivery_view(d) for d in rows],
        }

    return await svc.db.read(read)


ROUTES = [
    Route("/admin/events", admin(list_events), methods=["GET"]),
    Route("/admin/events/{event_id}", admin(get_event), methods=["GET"]),
    Route("/admin/jobs", admin(list_jobs), methods=["GET"]),
    Route("/admin/jobs/{job_id}", admin(get_job), methods=["GET"]),
]
