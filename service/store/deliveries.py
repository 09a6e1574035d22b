"""The deliveries table (the outbox): one row per event and route, written with the event.

Claiming, leasing and finishing deliveries belong to the dispatch worker and live here too once
it exists; today rows are enqueued as `pending` and listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.dispatch.routing import Route
from service.ids import new_id
from service.store.tables import DELIVERIES, DeliveryRow


async def enqueue(
    session: AsyncSession, *, event_id: str, routes: Sequence[Route], at: datetime
) -> None:
    """One `pending` delivery per route, due now."""
    if not routes:
        return
    await session.execute(
        sa.insert(DELIVERIES),
        [
            {
                "id": new_id("dlv"),
                "event_id": event_id,
                "route": route.name,
                "handler": route.handler,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": at,
                "created_at": at,
                "updated_at": at,
            }
            for route in routes
        ],
    )


async def deliveries_of(session: AsyncSession, event_ids: Sequence[str]) -> list[DeliveryRow]:
    """The deliveries of these events, oldest first."""
    if not event_ids:
        return []
    stmt = (
        sa.select(DeliveryRow)
        .where(DeliveryRow.event_id.in_(event_ids))
        .order_by(DeliveryRow.created_at, DeliveryRow.id)
    )
    return list((await session.scalars(stmt)).all())
