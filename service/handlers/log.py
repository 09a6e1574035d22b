"""The `log` handler: one structured log line per event. The default route when none is set."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import structlog

from service.handlers.base import Delivery, HandlerDeps, Ok, OptionsError, Outcome

log = structlog.get_logger("service.handlers.log")


class LogHandler:
    """Writes each delivered event to the service's log."""

    name: ClassVar[str] = "log"

    @classmethod
    def from_options(cls, options: Mapping[str, Any], deps: HandlerDeps) -> LogHandler:
        """The log handler takes no options."""
        if options:
            raise OptionsError(f"{', '.join(sorted(options))}: the log handler takes no options")
        return cls()

    async def handle(self, delivery: Delivery) -> Outcome:
        """Log the event's normalized fields (never its body)."""
        event = delivery.event
        log.info(
            "event_delivered",
            route=delivery.route,
            delivery_id=delivery.id,
            attempt=delivery.attempt,
            event_id=delivery.event_id,
            event_type=event.type,
            job_id=event.job_id,
            model=event.model,
            is_test=event.is_test,
        )
        return Ok("logged")
