"""The route template a request matched (`/webhooks/llmtune/jobs/{token}`), for span names.

Tracing names server spans by template, never by path: a path can carry a credential (a job's
callback token) and makes every request a name of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.routing import BaseRoute, Match


def route_template(routes: list[BaseRoute], scope: Mapping[str, Any]) -> str | None:
    """The path template of the first route that fully matches `scope`, else of the last
    partial match (a wrong method), else None."""
    template: str | None = None
    for route in routes:
        match, _ = route.matches(dict(scope))
        if match is Match.NONE:
            continue
        template = getattr(route, "path", None)
        if match is Match.FULL:
            break
    return template


def route_of(scope: Mapping[str, Any]) -> str | None:
    """`route_template` over the routes of the Starlette app serving `scope`."""
    app = scope.get("app")
    routes = getattr(app, "routes", None)
    return route_template(routes, scope) if isinstance(routes, list) else None
