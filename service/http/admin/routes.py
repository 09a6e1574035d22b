"""Admin API for events (jobs and deliveries have modules of their own), behind Bearer tokens,
in camelCase JSON."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.routing import Route

from service.http.admin import deliveries as delivery_routes
from service.http.admin import jobs as job_routes
from service.http.admin import params, schemas
from service.http.admin.endpoint import admin, page_body, path_id
from service.http.errors import NotFound
from service.services import Services
from service.store import deliveries, events
from service.store.events import EventFilter


async def list_events(request: Request, svc: Services) -> dict[str, Any]:
    """Events, newest first, filtered by type, jobId, duplicate, test, since, until."""
    query = request.query_params
    where = EventFilter(
        type=params.text_param(query, "type"),
        job_id=params.text_param(query, "jobId"),
        workspace=params.text_param(query, "workspace"),
        duplicate=params.bool_param(query, "duplicate"),
        test=params.bool_param(query, "test"),
        since=params.time_param(query, "since"),
        until=params.time_param(query, "until"),
    )
    limit, cursor = params.page_params(query)
    page = await svc.db.read(
        lambda session: events.list_events(session, where=where, limit=limit, cursor=cursor)
    )
    return page_body(page, schemas.event_summary)


async def get_event(request: Request, svc: Services) -> dict[str, Any]:
    """One event with payload, raw body, redacted headers and deliveries."""
    event_id = path_id(request, "event_id", "event")

    async def read(session: AsyncSession) -> dict[str, Any]:
        row = await events.get_event(session, event_id)
        if row is None:
            raise NotFound(f"no event {event_id!r}")
        return schemas.event_detail(row, await deliveries.deliveries_of(session, [row.id]))

    return await svc.db.read(read)


ROUTES = [
    Route("/admin/events", admin(list_events), methods=["GET"]),
    Route("/admin/events/{event_id}", admin(get_event), methods=["GET"]),
    *job_routes.ROUTES,
    *delivery_routes.ROUTES,
]
