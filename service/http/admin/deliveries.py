"""Admin API for deliveries: list and inspect them with their attempts, retry one or many, and
replay an event to its routes."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.routing import BaseRoute

from service.delivery_status import RETRYABLE, UNDER_WAY, DeliveryStatus
from service.dispatch.replays import UnknownRoute
from service.http.admin import schemas, shapes
from service.http.admin.audit import audit_target
from service.http.admin.endpoint import AdminRoute, page_body, parsed_query, path_id
from service.http.admin.params import Id, Paged, Query, Text, Time
from service.http.errors import Conflict, InvalidParameter, NotFound
from service.services import Services
from service.store import deliveries
from service.store.deliveries import DeliveryFilter


class RetryQuery(Query):
    """`POST /admin/deliveries/retry`: the list's filters (status defaults to dead), no paging."""

    scope: ClassVar[str] = "deliveries.retry"
    status: DeliveryStatus | None = Field(None, description="the delivery's state")
    route: Text | None = Field(None, description="the route's name")
    eventId: Id | None = Field(None, description="the event delivered")
    jobId: Text | None = Field(None, description="LLMTune's job id")
    workspace: Text | None = Field(None, description="the workspace of the event")
    since: Time | None = Field(None, description="only rows created at or after this time")
    until: Time | None = Field(None, description="only rows created before this time")


class DeliveriesQuery(Paged, RetryQuery):
    """`GET /admin/deliveries`."""

    scope: ClassVar[str] = "deliveries"


class ReplayQuery(Query):
    """`POST /admin/events/{event_id}/replay`."""

    scope: ClassVar[str] = "events.replay"
    route: Text | None = Field(None, description='only this route (or send {"route": ...})')


def _filter(query: RetryQuery, *, default_status: str | None = None) -> DeliveryFilter:
    return DeliveryFilter(
        status=query.status or default_status,
        route=query.route,
        event_id=query.eventId,
        job_id=query.jobId,
        workspace=query.workspace,
        since=query.since,
        until=query.until,
    )


async def list_deliveries(request: Request, svc: Services) -> dict[str, Any]:
    """Deliveries, newest first, filtered by status, route, eventId, jobId, workspace, since,
    until."""
    query = parsed_query(request, DeliveriesQuery)
    where = _filter(query)
    page = await svc.db.read(
        lambda s: deliveries.list_deliveries(s, where=where, limit=query.limit, cursor=query.after)
    )
    return page_body(page, schemas.delivery_view, query)


async def get_delivery(request: Request, svc: Services) -> dict[str, Any]:
    """One delivery with every attempt."""
    delivery_id = path_id(request, "delivery_id", "delivery")

    async def read(session: AsyncSession) -> dict[str, Any]:
        row = await deliveries.get_delivery(session, delivery_id)
        if row is None:
            raise NotFound(f"no delivery {delivery_id!r}")
        tries = await deliveries.attempts_of(session, delivery_id)
        return {**schemas.delivery_view(row), "attempts": [schemas.attempt_view(a) for a in tries]}

    return await svc.db.read(read)


async def retry_delivery(request: Request, svc: Services) -> dict[str, Any]:
    """Make a dead or retrying delivery due now with a fresh attempt budget. Idempotent: one
    already pending or in flight is answered as it stands (`retried: false`); a succeeded one is
    409 (replay its event to send it again)."""
    delivery_id = path_id(request, "delivery_id", "delivery")
    audit_target(request, delivery_id=delivery_id)

    async def check(session: AsyncSession) -> None:
        row = await deliveries.get_delivery(session, delivery_id)
        if row is None:
            raise NotFound(f"no delivery {delivery_id!r}")
        if row.status not in (*RETRYABLE, *UNDER_WAY):
            raise Conflict(
                f"delivery is {row.status}; replay its event to deliver it again",
                details={"status": row.status},
            )

    await svc.db.read(check)
    # Conditional on the status, so a delivery that moved on meanwhile is left alone.
    retried = await svc.replays.retry(DeliveryFilter(), ids=[delivery_id])

    async def view(session: AsyncSession) -> dict[str, Any]:
        row = await deliveries.get_delivery(session, delivery_id)
        if row is None:  # purged meanwhile
            raise NotFound(f"no delivery {delivery_id!r}")
        return {**schemas.delivery_view(row), "retried": bool(retried)}

    result = await svc.db.read(view)
    audit_target(request, retried=result["retried"])
    return result


async def retry_deliveries(request: Request, svc: Services) -> dict[str, Any]:
    """Bulk retry by the list filters (status defaults to `dead`); how many were queued.
    Idempotent: sent again, it finds nothing left to retry (`{"retried": 0}`)."""
    query = parsed_query(request, RetryQuery)
    count = await svc.replays.retry(_filter(query, default_status="dead"))
    audit_target(request, retried=count, filters=query.filters())
    return {"retried": count}


async def replay_event(request: Request, svc: Services) -> dict[str, Any]:
    """Deliver a stored event again to every route it matches, or to the one `route` named."""
    event_id = path_id(request, "event_id", "event")
    named = await _named_route(request)
    audit_target(request, event_id=event_id)
    try:
        replayed = await svc.replays.replay_event(event_id, route=named)
    except UnknownRoute as exc:
        raise InvalidParameter(str(exc), details={"parameter": "route"}) from None
    if replayed is None:
        raise NotFound(f"no event {event_id!r}")
    audit_target(request, routes=list(replayed.routes), queued=replayed.queued)
    return {"eventId": event_id, "queued": replayed.queued}


async def _named_route(request: Request) -> str | None:
    raw = await request.body()
    if not raw:
        return parsed_query(request, ReplayQuery).route
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidParameter('the body must be JSON such as {"route": "slack"}') from None
    route = body.get("route") if isinstance(body, dict) else None
    if route is not None and not isinstance(route, str):
        raise InvalidParameter("route must be a route name", details={"parameter": "route"})
    return route


ROUTES: list[BaseRoute] = [
    AdminRoute(
        "/admin/deliveries",
        list_deliveries,
        query=DeliveriesQuery,
        response=shapes.DeliveryView,
    ),
    AdminRoute(
        "/admin/deliveries/retry",
        retry_deliveries,
        method="POST",
        query=RetryQuery,
        response=shapes.RetriedCount,
        action="deliveries.retry",
    ),
    AdminRoute("/admin/deliveries/{delivery_id}", get_delivery, response=shapes.DeliveryDetail),
    AdminRoute(
        "/admin/deliveries/{delivery_id}/retry",
        retry_delivery,
        method="POST",
        response=shapes.RetriedDelivery,
        action="delivery.retry",
    ),
    AdminRoute(
        "/admin/events/{event_id}/replay",
        replay_event,
        method="POST",
        query=ReplayQuery,
        response=shapes.Replayed,
        action="event.replay",
    ),
]
