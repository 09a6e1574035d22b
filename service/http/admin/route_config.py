"""`GET /admin/routes`: the configured routes as the service loaded them (read scope).

Options are not shown: they hold secrets, private keys, tokens and webhook URLs whose path or
query is itself a credential. Of an `http` route only an allow-list is: its `signing`, the
`whpk_` public key its `v1a` signatures verify with (what the destination's owner needs), and
the destination's host. A disabled route's options were never checked, so what cannot be read
from them is null rather than an error. The list comes from memory: no store is read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import httpx
from starlette.requests import Request
from starlette.routing import BaseRoute

from service.handlers.http import SIGNINGS, HttpForwardHandler, Signing
from service.handlers.signing import public_key_for
from service.http.admin import shapes
from service.http.admin.endpoint import AdminRoute
from service.routing import Subscription
from service.services import Services

ROUTES_PATH = "/admin/routes"


def _signing(options: Mapping[str, Any]) -> Signing | None:
    value = options.get("signing", "v1")
    return next((known for known in SIGNINGS if known == value), None)


def _public_key(options: Mapping[str, Any], signing: str | None) -> str | None:
    private_key = options.get("private_key")
    if signing not in ("v1a", "both") or not isinstance(private_key, str):
        return None
    with contextlib.suppress(ValueError):
        return public_key_for(private_key)
    return None


def _host(options: Mapping[str, Any]) -> str | None:
    url = options.get("url")
    if not isinstance(url, str):
        return None
    with contextlib.suppress(httpx.InvalidURL):
        return httpx.URL(url).host or None  # never the user info, path or query
    return None


def route_view(route: Subscription) -> shapes.RouteView:
    """A configured route as listed: never an option's value beyond the allow-list above."""
    forward = route.handler == HttpForwardHandler.name
    signing = _signing(route.options) if forward else None
    return {
        "name": route.name,
        "handler": route.handler,
        "events": list(route.events),
        "enabled": route.enabled,
        "workspaces": None if route.workspaces is None else list(route.workspaces),
        "maxAttempts": route.max_attempts,
        "rateLimit": route.rate_limit,
        "signing": signing,
        "publicKey": _public_key(route.options, signing) if forward else None,
        "destinationHost": _host(route.options) if forward else None,
    }


async def list_routes(request: Request, svc: Services) -> shapes.RouteList:
    """The configured routes, in file order, without their options' secrets. An `http` route
    shows its `signing`, its `v1a` public key (`whpk_...`) and its destination's host."""
    return {"items": [route_view(route) for route in svc.routes]}


ROUTES: list[BaseRoute] = [AdminRoute(ROUTES_PATH, list_routes, response=shapes.RouteList)]
