"""Which routes an event goes to. Pure.

A route subscribes to event-name patterns (`training.*`, `model.deployed`, `*`). Until routes are
configurable, every event goes to the default `log` route; deliveries are recorded now and run by
the dispatch worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True, slots=True)
class Route:
    """A named subscription of one handler to some event names."""

    name: str
    handler: str
    events: tuple[str, ...]


DEFAULT_ROUTES: tuple[Route, ...] = (Route(name="log", handler="log", events=("*",)),)


def matches(route: Route, event_type: str) -> bool:
    """True when one of the route's patterns matches the event name (case-sensitive glob)."""
    return any(fnmatchcase(event_type, pattern) for pattern in route.events)


def routes_for(event_type: str, routes: Sequence[Route]) -> list[Route]:
    """The routes that subscribe to `event_type`, in configuration order."""
    return [route for route in routes if matches(route, event_type)]
