"""Admin API for events (jobs, deliveries, test events and rejections have modules of their
own), behind Bearer tokens, in camelCase JSON. `ROUTES` is the registry of every admin route;
`operations()` lists their declarations (see `endpoint.AdminRoute`)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.routing import BaseRoute

from service.http.admin import deliveries as delivery_routes
from service.http.admin import jobs as job_routes
from service.http.admin import openapi, route_config, schemas, shapes
from service.http.admin import rejections as rejection_routes
from service.http.admin import stream as stream_routes
from service.http.admin import synthetic as synthetic_routes
from service.http.admin.endpoint import AdminRoute, Operation, page_body, parsed_query, path_id
from service.http.admin.params import Flag, Many, Paged, Text, Time
from service.http.errors import NotFound
from service.services import Services
from service.store import deliveries, events
from service.store.events import EventFilter


class EventsQuery(Paged):
    """`GET /admin/events`."""

    scope: ClassVar[str] = "events"
    type: Many[Text] = Field((), description="event type; repeat for any of several")
    jobId: Text | None = Field(None, description="LLMTune's job id")
    workspace: Text | None = Field(None, description="the LLMTune workspace it arrived for")
    duplicate: Flag | None = Field(
        None, description="true: received more than once (duplicateCount > 0) (also 1 or 0)"
    )
    test: Flag | None = Field(
        None, description="true: test events only; false: real ones only (also 1 or 0)"
    )
    since: Time | None = Field(None, description="only rows received at or after this time")
    until: Time | None = Field(None, description="only rows received before this time")


async def list_events(request: Request, svc: Services) -> dict[str, Any]:
    """Events, newest first, filtered by type, jobId, workspace, duplicate, test, since, until."""
    query = parsed_query(request, EventsQuery)
    where = EventFilter(
        types=query.type,
        job_id=query.jobId,
        workspace=query.workspace,
        duplicate=query.duplicate,
        test=query.test,
        since=query.since,
        until=query.until,
    )
    page = await svc.db.read(
        lambda session: events.list_events(
            session, where=where, limit=query.limit, cursor=query.after
        )
    )
    return page_body(page, schemas.event_summary, query)


async def get_event(request: Request, svc: Services) -> dict[str, Any]:
    """One event with payload, raw body, redacted headers and deliveries."""
    event_id = path_id(request, "event_id", "event")

    async def read(session: AsyncSession) -> dict[str, Any]:
        opened = await events.opened_event(session, event_id, svc.db.sealer)
        if opened is None:
            raise NotFound(f"no event {event_id!r}")
        return schemas.event_detail(opened, await deliveries.deliveries_of(session, [event_id]))

    return await svc.db.read(read)


ROUTES: list[BaseRoute] = [
    AdminRoute("/admin/events", list_events, query=EventsQuery, response=shapes.EventSummary),
    AdminRoute("/admin/events/{event_id}", get_event, response=shapes.EventDetail),
    *job_routes.ROUTES,
    *delivery_routes.ROUTES,
    *synthetic_routes.ROUTES,
    *rejection_routes.ROUTES,
    *stream_routes.ROUTES,
    *route_config.ROUTES,
    AdminRoute(openapi.OPENAPI_PATH, openapi.openapi_document),
]


def operations() -> list[Operation]:
    """Every admin route's declaration: method, path, scope, query parameters, body, response."""
    return [route.operation for route in ROUTES if isinstance(route, AdminRoute)]
