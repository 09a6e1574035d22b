"""What the console reads beyond the admin API's answers: each listed event's delivery counts,
a delivery's request headers, a job's training metrics, and the overview's figures. Each starts
from the admin endpoint function (same validation, same errors) and adds the store's summaries
(`service.store.console_queries`) in the API's field style.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from service.http.admin import schemas
from service.http.admin.deliveries import get_delivery
from service.http.admin.jobs import get_job
from service.http.admin.routes import list_events
from service.http.console.metrics import metrics_entry
from service.services import Services
from service.store import console_queries, events
from service.timestamps import rfc3339


async def events_with_counts(request: Request, svc: Services) -> dict[str, Any]:
    """The admin events list, each item with `deliveryCounts` ({status: count})."""
    body = await list_events(request, svc)
    ids = [item["id"] for item in body["items"]]

    async def read(session: AsyncSession) -> dict[str, tuple[console_queries.StatusCount, ...]]:
        return await console_queries.delivery_counts(session, ids)

    counts = await svc.db.read(read)
    items = [
        {**item, "deliveryCounts": {c.status: c.count for c in counts.get(item["id"], ())}}
        for item in body["items"]
    ]
    return {**body, "items": items}


async def delivery_with_request(request: Request, svc: Services) -> dict[str, Any]:
    """The admin API's delivery with its attempts, and `requestHeaders`: the headers its event
    arrived with, redacted as the admin API redacts them (empty once the event is purged)."""
    delivery = await get_delivery(request, svc)

    async def read(session: AsyncSession) -> list[dict[str, str]]:
        opened = await events.opened_event(session, delivery["eventId"], svc.db.sealer)
        return [] if opened is None else schemas.redacted_headers(opened.headers)

    return {**delivery, "requestHeaders": await svc.db.read(read)}


async def job_with_metrics(request: Request, svc: Services) -> dict[str, Any]:
    """The admin API's job, with `trainingMetrics`: each of its events' metrics, oldest first."""
    job = await get_job(request, svc)
    llmtune_id = job["llmtuneJobId"]
    if llmtune_id is None:
        return {**job, "trainingMetrics": []}

    async def read(session: AsyncSession) -> list[console_queries.JobEventBody]:
        return await console_queries.job_event_bodies(session, llmtune_id, svc.db.sealer)

    bodies = await svc.db.read(read)
    entries = [metrics_entry(b.id, b.type, rfc3339(b.received_at), b.raw_body) for b in bodies]
    return {**job, "trainingMetrics": entries}


async def overview(request: Request, svc: Services) -> dict[str, Any]:
    """Events per clock hour over the last 24 hours and deliveries by status."""
    now = svc.clock.now()

    async def read(
        session: AsyncSession,
    ) -> tuple[tuple[console_queries.HourCount, ...], tuple[console_queries.StatusCount, ...]]:
        hours = await console_queries.events_per_hour(session, now=now)
        return hours, await console_queries.deliveries_by_status(session)

    hours, statuses = await svc.db.read(read)
    return {
        "eventsPerHour": [{"start": rfc3339(h.start), "count": h.count} for h in hours],
        "deliveriesByStatus": [asdict(s) for s in statuses],
    }
