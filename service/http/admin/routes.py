"""Admin API for events and jobs, behind Bearer tokens, in camelCase JSON."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.routing import Route

from service.http.admin import deliveries as delivery_routes
from service.http.admin import params, schemas
from service.http.admin.endpoint import admin, page_body, path_id
from service.http.errors import NotFound
from service.services import Services
from service.store import deliveries, events, jobs
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


async def list_jobs(request: Request, svc: Services) -> dict[str, Any]:
    """Jobs, newest first, optionally filtered by status."""
    query = request.query_params
    limit, cursor = params.page_params(query)
    status = params.text_param(query, "status")
    page = await svc.db.read(
        lambda session: jobs.list_jobs(session, status=status, limit=limit, cursor=cursor)
    )
    return page_body(page, schemas.job_summary)


async def get_job(request: Request, svc: Services) -> dict[str, Any]:
    """One job with its timeline of events and their deliveries."""
    job_id = path_id(request, "job_id", "job")

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
    *delivery_routes.ROUTES,
]
