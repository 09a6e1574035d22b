"""What every admin endpoint shares: its declaration as data (`AdminRoute.operation`), the token
check (read or write scope by HTTP method), strict query parsing, the audit line of mutating
calls, JSON rendering, ids in paths, pages.

`AdminRoute` is a Starlette `Route` that also carries an `Operation`: method, path, scope, the
audit action, the query model (`params.Query`), the request body model and the response
shape (a TypedDict of `shapes`). `routes.operations()` lists them all, for an OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.admin_tokens import Scope
from service.http.admin.audit import write_audit_line
from service.http.admin.auth import require_admin, require_write
from service.http.admin.params import Paged, Query
from service.http.context import services
from service.http.errors import ApiError, NotFound
from service.http.responses import JSONResponse
from service.ids import looks_like_id
from service.services import Services
from service.store.db import StoreUnavailable
from service.store.paging import Page

Endpoint = Callable[[Request, Services], Awaitable[Any]]
# Methods that change nothing; every other one needs a write-scope token and is audited.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_QUERY = "admin_query"
Q = TypeVar("Q", bound=Query)


@dataclass(frozen=True, slots=True)
class Operation:
    """One admin endpoint as data: what it accepts, what it answers, who may call it."""

    method: str
    path: str
    summary: str
    scope: Scope  # `read` for GET, `write` for every other method
    action: str | None  # the audit line's `action` (mutating endpoints only)
    query: type[Query]  # its query parameters; `query.paged` lists answer a page of `response`
    body: type | None  # the request body model (pydantic), if it takes one
    response: type | None  # a TypedDict from `shapes`: the answer, or one item of a page
    status: int  # the success status


class AdminRoute(Route):
    """A Starlette route for an admin endpoint, carrying its `Operation`."""

    def __init__(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        method: str = "GET",
        query: type[Query] = Query,
        response: type | None = None,
        body: type | None = None,
        action: str | None = None,
        status: int = 200,
    ) -> None:
        write = method not in READ_METHODS
        self.operation = Operation(
            method=method,
            path=path,
            # The docstring's first paragraph, on one line (a wrapped line is not the whole).
            summary=" ".join((endpoint.__doc__ or "").strip().split("\n\n")[0].split()),
            scope="write" if write else "read",
            action=(action or endpoint.__name__) if write else None,
            query=query,
            body=body,
            response=response,
            status=status,
        )
        super().__init__(path, admin(endpoint, operation=self.operation), methods=[method])


def parsed_query(request: Request, model: type[Q]) -> Q:
    """The query of this request parsed with `model`: as `AdminRoute` already parsed it, or
    parsed now when the endpoint function is called directly (the console does)."""
    found = getattr(request.state, _QUERY, None)
    if not isinstance(found, model) or type(found) is not model:
        found = model.parse(request.query_params)
        setattr(request.state, _QUERY, found)
    return found


def admin(
    endpoint: Endpoint, *, operation: Operation | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an endpoint with the token check, strict query parsing (no parameter is accepted
    unless `operation` declares it), the audit line of mutating methods, and JSON rendering."""
    name = operation.action if operation and operation.action else endpoint.__name__
    query = operation.query if operation else Query

    async def wrapped(request: Request) -> Response:
        svc = services(request)
        write = request.method not in READ_METHODS
        # The scope is checked inside the audited block: a read token's attempt is logged too.
        token = require_admin(request, svc, write=False)
        request.state.admin_token = token
        if not write:
            setattr(request.state, _QUERY, query.parse(request.query_params))
            return _rendered(await endpoint(request, svc))
        try:
            require_write(token)
            setattr(request.state, _QUERY, query.parse(request.query_params))
            response = _rendered(await endpoint(request, svc))
        except ApiError as exc:
            write_audit_line(request, token, action=name, status=exc.status, error=exc.code)
            raise
        except Exception as exc:
            # Answered by the error table (503 for the store, else 500); named here by class.
            status = 503 if isinstance(exc, StoreUnavailable) else 500
            write_audit_line(request, token, action=name, status=status, error=type(exc).__name__)
            raise
        write_audit_line(request, token, action=name, status=response.status_code)
        return response

    wrapped.__name__ = endpoint.__name__
    wrapped.__doc__ = endpoint.__doc__
    return wrapped


def _rendered(result: Any) -> Response:
    # An endpoint that picks its own status (201 Created) answers with a Response.
    return result if isinstance(result, Response) else JSONResponse(result)


def path_id(request: Request, name: str, kind: str) -> str:
    """The id in the path, or 404 when it cannot be one of ours."""
    value: str = request.path_params[name]
    # Not one of our ids: 404 without a query (a NUL byte would make PostgreSQL refuse it).
    if not looks_like_id(value):
        raise NotFound(f"no {kind} {value[:64]!r}")
    return value


def page_body(page: Page[Any], render: Callable[[Any], Any], query: Paged) -> dict[str, Any]:
    """`{"items": [...], "nextCursor": ...}` for one page of rows; the cursor is bound to the
    filters of `query`."""
    return {
        "items": [render(row) for row in page.items],
        "nextCursor": query.next_cursor(page.next_key),
    }
