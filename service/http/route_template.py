"""Which route a request is for, named by its template (`/webhooks/llmtune/jobs/{token}`).

Log lines, records and trace spans name a request's path by its route's template: a job
callback URL's token is a credential, and ids in paths make every line (and span name) unique
for no reader's benefit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> tuple[str, dict[str, Any]] | None:
    """The template and path parameters of the first of `routes` that fully matches `scope`,
    else of the first that matches its path only (a wrong method: a 405 is still for that
    route), else None."""
    partial: tuple[str, dict[str, Any]] | None = None
    for route in routes:
        match, child = route.matches(scope)
        template = getattr(route, "path", None)  # as written, converters included
        if match is Match.NONE or not isinstance(template, str):
            continue
        found = template, dict(child.get("path_params", {}))
        if match is Match.FULL:
            return found
        partial = partial or found
    return partial


def matched_route(scope: Scope) -> tuple[str, dict[str, Any]] | None:
    """`route_template` over the routes of the Starlette app serving `scope`."""
    routes = getattr(scope.get("app"), "routes", None)
    return route_template(routes, scope) if isinstance(routes, list) else None


def route_name(scope: Scope) -> str | None:
    """Just the template of `matched_route` (what server spans are named by)."""
    found = matched_route(scope)
    return None if found is None else found[0]


def loggable_path(scope: Scope) -> str:
    """The path to log for `scope` once routed: its route's template; a path no route has is
    cut after its second segment (it may still carry a token)."""
    path: str = scope["path"]
    if scope.get("endpoint") is not None and not scope.get("path_params"):
        return path  # a route without parameters: the path is its template
    found = matched_route(scope)
    if found is not None:
        return found[0]
    segments = path.split("/", 3)
    return path if len(segments) <= 3 else "/".join(segments[:3]) + "/…"
