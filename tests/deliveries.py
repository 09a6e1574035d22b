"""Building the `Delivery` a handler is given, for handler and formatting tests.

Defaults describe one ordinary `training.completed` delivery; a test names only what it is about.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from service.events import Event
from service.handlers.base import Delivery

MODEL = "meta-llama/Llama-3.3-70B-Instruct"
OCCURRED = datetime(2025, 11, 8, 14, 22, 31, tzinfo=UTC)
RECEIVED = datetime(2025, 11, 8, 14, 22, 32, tzinfo=UTC)


def an_event(event_id: str = "evt_1", **fields: Any) -> Event:
    """The normalized event of webhook `event_id`; `fields` override any of its values."""
    values: dict[str, Any] = {
        "type": "training.completed",
        "dedup_key": f"id:{event_id}",
        "external_id": event_id,
        "job_id": "job-1",
        "model": MODEL,
        "artifact": None,
        "deployment_id": None,
        "metrics": None,
        "error": None,
        "occurred_at": OCCURRED,
        "is_test": False,
    }
    return Event(**(values | fields))


def a_delivery(
    *,
    id: str = "dlv_1",
    event_id: str = "evt_1",
    route: str = "route",
    attempt: int = 1,
    payload: dict[str, Any] | None = None,
    received_at: datetime = RECEIVED,
    **event: Any,
) -> Delivery:
    """Delivery `id` of stored event `event_id` to `route`; `event` overrides the event's values
    (see `an_event`)."""
    return Delivery(
        id=id,
        attempt=attempt,
        route=route,
        event_id=event_id,
        event=an_event(event_id, **event),
        payload={} if payload is None else payload,
        received_at=received_at,
    )
