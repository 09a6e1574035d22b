"""Which routes an event goes to. Pure.

A route subscribes one handler, with its options, to event-name patterns (`training.*`,
`model.deployed`, `*`). With no routes file, every event goes to the default `log` route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Any

from service.events import DEFAULT_WORKSPACE

# A Svix-like day of retries: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_MAX_ATTEMPTS = 9


@dataclass(frozen=True, slots=True)
class Subscription:
    """A named subscription of one handler to some event names."""

    name: str
    handler: str
    events: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    rate_limit: float | None = None
    enabled: bool = True
    # None: events of every workspace; otherwise only these workspaces' events.
    workspaces: tuple[str, ...] | None = None


DEFAULT_ROUTES: tuple[Subscription, ...] = (Subscription(name="log", handler="log", events=("*",)),)


def matches(route: Subscription, event_type: str) -> bool:
    """True when one of the route's patterns matches the event name (case-sensitive glob)."""
    return any(fnmatchcase(event_type, pattern) for pattern in route.events)


def routes_for(
    event_type: str, routes: Sequence[Subscription], workspace: str = DEFAULT_WORKSPACE
) -> list[Subscription]:
    """The enabled routes that subscribe to `event_type` from `workspace`, in file order."""
    return [
        route
        for route in routes
        if route.enabled
        and matches(route, event_type)
        and (route.workspaces is None or workspace in route.workspaces)
    ]
