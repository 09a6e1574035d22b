"""What every admin endpoint shares: the token check, JSON rendering, ids in paths, pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service.http.admin.auth import require_admin
from service.http.context import services
from service.http.errors import NotFound
from service.http.responses import JSONResponse
from service.ids import looks_like_id
from service.services import Services
from service.store.paging import Page, encode_cursor

Endpoint = Callable[[Request, Services], Awaitable[Any]]


def admin(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an endpoint with the token check and JSON rendering."""

    async def wrapped(request: Request) -> Response:
        svc = services(request)
        require_admin(request, svc.admin_tokens)
        result = await endpoint(request, svc)
        # An endpoint that picks its own status (201 Created) answers with a Response.
        return result if isinstance(result, Response) else JSONResponse(result)

    wrapped.__name__ = endpoint.__name__
    wrapped.__doc__ = endpoint.__doc__
    return wrapped


def path_id(request: Request, name: str, kind: str) -> str:
    """The id in the path, or 404 when it cannot be one of ours."""
    value: str = request.path_params[name]
    # Not one of our ids: 404 without a query (a NUL byte would make PostgreSQL refuse it).
    if not looks_like_id(value):
        raise NotFound(f"no {kind} {value[:64]!r}")
    return value


def page_body(page: Page[Any], render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """`{"items": [...], "nextCursor": ...}` for one page of rows."""
    cursor = encode_cursor(page.next_key) if page.next_key else None
    return {"items": [render(row) for row in page.items], "nextCursor": cursor}
