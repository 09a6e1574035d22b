"""The internal `delivery.dead` event: what the worker stores, through the ingest service, when a
delivery gives up, so operators can route it like any other event."""

from __future__ import annotations

from datetime import datetime

import orjson

from service.handlers.base import Delivery
from service.store.outbox import Claimed
from service.timestamps import rfc3339

DEAD_EVENT = "delivery.dead"  # in service.events.INTERNAL_EVENTS


def dead_event_body(
    item: Claimed, delivery: Delivery, error: str | None, *, now: datetime
) -> bytes:
    """The internal `delivery.dead` event, shaped like LLMTune's W3 events so it routes and
    renders like one; its id makes a repeat of the same death a duplicate."""
    return orjson.dumps(
        {
            "id": f"dead_{item.id}_{item.attempt}",
            "event": DEAD_EVENT,
            "data": {
                "deliveryId": item.id,
                "route": item.route,
                "eventId": item.event_id,
                "eventType": delivery.event.type,
                "jobId": item.job_id,
                "attempts": item.attempt,
                "error": error,
            },
            "timestamp": rfc3339(now),
        }
    )
