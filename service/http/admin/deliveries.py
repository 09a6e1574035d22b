"""Admin API for deliveries: list and inspect them with their attempts, retry one or many, and
replay an event to its routes."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.routing import Route

from service.dispatch.routing import routes_for
from service.http.admin import params, schemas
from service.http.admin.endpoint import admin, page_body, path_id
from service.http.errors import Conflict, InvalidParameter, NotFound
from service.services import Services
from service.store import deliveries, events
from service.store.deliveries import DeliveryFilter

STATUSES = ("pending", "in_flight", "retrying", "succeeded", "dead")


def _filter(request: Request, *, default_status: str | None = None) -> DeliveryFilter:
    query = request.query_params
    status = query.get("status", default_status)
    if status is not None and status not in STATUSES:
        raise InvalidParameter(
            f"status must be one of {', '.join(STATUSES)}", details={"parameter": "status"}
        )
    return DeliveryFilter(
        status=status,
        route=params.text_param(query, "route"),
        event_id=params.text_param(query, "eventId"),
        job_id=params.text_param(query, "jobId"),
        workspace=params.text_param(query, "workspace"),
    )


def _budgets(svc: Services) -> dict[str, int]:
    return {route.name: route.max_attempts for route in svc.routes}


async def list_deliveries(request: Request, svc: Services) -> dict[str, Any]:
    """Deliveries, newest first, filtered by status, route, eventId, jobId."""
    where = _filter(request)
    limit, cursor = params.page_params(request.query_params)
    page = await svc.db.read(
        lambda s: deliveries.list_deliveries(s, where=where, limit=limit, cursor=cursor)
    )
    return page_body(page, schemas.delivery_view)


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
    """Make one dead (or waiting) delivery due now, with a fresh attempt budget."""
    delivery_id = path_id(request, "delivery_id", "delivery")
    now = svc.clock.now()

    async def write(session: AsyncSession) -> dict[str, Any]:
        row = await deliveries.get_delivery(session, delivery_id)
        if row is None:
            raise NotFound(f"no delivery {delivery_id!r}")
        if row.status not in deliveries.RETRYABLE:
            raise Conflict(
                f"delivery is {row.status}; only dead or retrying deliveries are retried",
                details={"status": row.status},
            )
        await deliveries.retry(
            session, where=DeliveryFilter(), ids=[delivery_id], budgets=_budgets(svc), now=now
        )
        return {"id": delivery_id, "status": "pending"}

    result = await svc.db.write(write)
    svc.notifier.notify()
    return result


async def retry_deliveries(request: Request, svc: Services) -> dict[str, Any]:
    """Bulk retry by the list filters (status defaults to `dead`); how many were queued."""
    where = _filter(request, default_status="dead")
    now = svc.clock.now()
    count = await svc.db.write(
        lambda s: deliveries.retry(s, where=where, ids=None, budgets=_budgets(svc), now=now)
    )
    svc.notifier.notify()
    return {"retried": count}


async def replay_event(request: Request, svc: Services) -> dict[str, Any]:
    """Deliver a stored event again to every route it matches, or to the one `route` named."""
    event_id = path_id(request, "event_id", "event")
    named = await _named_route(request)
    now = svc.clock.now()

    async def write(session: AsyncSession) -> dict[str, Any]:
        row = await events.get_event(session, event_id)
        if row is None:
            raise NotFound(f"no event {event_id!r}")
        targets = routes_for(row.type, svc.routes, row.workspace)
        if named is not None:
            targets = [route for route in svc.routes if route.name == named and route.enabled]
            if not targets:
                raise InvalidParameter(
                    f"no enabled route named {named!r}", details={"parameter": "route"}
                )
        queued = await deliveries.replay(
            session, event_id=event_id, job_id=row.job_id, routes=targets, now=now
        )
        return {"eventId": event_id, "queued": queued}

    result = await svc.db.write(write)
    svc.notifier.notify()
    return result


async def _named_route(request: Request) -> str | None:
    raw = await request.body()
    if not raw:
        return request.query_params.get("route")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidParameter('the body must be JSON such as {"route": "slack"}') from None
    route = body.get("route") if isinstance(body, dict) else None
    if route is not None and not isinstance(route, str):
        raise InvalidParameter("route must be a route name", details={"parameter": "route"})
    return route


ROUTES = [
    Route("/admin/deliveries", admin(list_deliveries), methods=["GET"]),
    Route("/admin/deliveries/retry", admin(retry_deliveries), methods=["POST"]),
    Route("/admin/deliveries/{delivery_id}", admin(get_delivery), methods=["GET"]),
    Route("/admin/deliveries/{delivery_id}/retry", admin(retry_delivery), methods=["POST"]),
    Route("/admin/events/{event_id}/replay", admin(replay_event), methods=["POST"]),
]
