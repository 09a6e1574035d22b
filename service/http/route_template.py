"""Which route a request is for, named by its template (`/webhooks/llmtune/jobs/{token}`).

Log lines and records name a request's path by its route's template: a job callback URL's
token is a credential, and ids in paths make every line unique for no reader's benefit.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def matched_route(scope: Scope) -> tuple[str, dict[str, Any]] | None:
    """The template and path parameters of the app's route for `scope`'s path (any method),
    or None when no route has that path."""
    app = scope.get("app")
    routes: list[BaseRoute] = getattr(app, "routes", [])
    for route in routes:
        match, child = route.matches(scope)
        template = getattr(route, "path_format", None)
        # PARTIAL: the path matched but not the method (a 405 is still for that route).
        if match is not Match.NONE and isinstance(template, str):
            return template, dict(child.get("path_params", {}))
    return None


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
