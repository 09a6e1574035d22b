"""Handlers by name: the built-ins plus third-party ones from the entry-point group
`llmtune_receiver.handlers`, and the one place routes are turned into working handlers.

A route naming an unknown handler, or options its handler refuses, stops start-up with one
`RouteError` line naming the route. A plugin cannot replace a built-in name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import cast

import structlog

from service.handlers.base import Handler, HandlerDeps, HandlerType, OptionsError
from service.handlers.email import EmailHandler
from service.handlers.http import HttpForwardHandler
from service.handlers.inference import InferenceHandler
from service.handlers.log import LogHandler
from service.handlers.slack import SlackHandler
from service.routing import Subscription

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "llmtune_receiver.handlers"
BUILTIN: Mapping[str, HandlerType] = {
    kind.name: kind
    for kind in (LogHandler, SlackHandler, EmailHandler, HttpForwardHandler, InferenceHandler)
}


class RouteError(ValueError):
    """A route cannot be served; the message names the route and the problem."""


def available() -> dict[str, HandlerType]:
    """Every handler type by name: built-ins first, then installed plugins."""
    found: dict[str, HandlerType] = dict(BUILTIN)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in found:
            log.warning("handler_plugin_ignored", name=point.name, reason="name is taken")
            continue
        found[point.name] = cast(HandlerType, point.load())
    return found


def build_handlers(
    routes: Sequence[Subscription], deps: HandlerDeps, types: Mapping[str, HandlerType]
) -> dict[str, Handler]:
    """A handler per enabled route, by route name; `RouteError` on the first unusable route."""
    built: dict[str, Handler] = {}
    for route in routes:
        if not route.enabled:
            continue
        kind = types.get(route.handler)
        if kind is None:
            known = ", ".join(sorted(types))
            raise RouteError(
                f"route {route.name!r}: unknown handler {route.handler!r} (known: {known})"
            )
        try:
            built[route.name] = kind.from_options(route.options, deps)
        except OptionsError as exc:
            raise RouteError(f"route {route.name!r}: {exc}") from None
    return built
