"""Pure ASGI middleware: 431 HEADERS_TOO_LARGE for requests whose headers, names and values
together, exceed MAX_HEADER_BYTES, before any route runs or anything is stored.

MAX_BODY_BYTES bounds only the body; without this, megabytes of headers would be stored with a
signed delivery (its headers are kept). A refused webhook request is recorded in the
rejections log like a 413, under its route's template.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.http.errors import HeadersTooLarge, error_response
from service.http.rejections import record_refusal
from service.http.route_template import matched_route

WEBHOOK_PREFIX = "/webhooks/"


def header_bytes(headers: Iterable[tuple[bytes, bytes]]) -> int:
    """The size of `headers`: every name and value, in bytes."""
    return sum(len(name) + len(value) for name, value in headers)


class HeaderLimitMiddleware:
    """Answers 431 (in our error shape) when a request's headers exceed `limit` bytes."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or header_bytes(scope["headers"]) <= self.limit:
            await self.app(scope, receive, send)
            return
        exc = HeadersTooLarge(
            f"request headers exceed {self.limit} bytes", details={"limit": self.limit}
        )
        found = matched_route(scope)
        if found is not None and found[0].startswith(WEBHOOK_PREFIX):
            template, path_params = found
            record_refusal(Request({**scope, "path_params": path_params}), exc, path=template)
        # The unread body is not drained: the connection closes after the answer.
        response = error_response(exc.status, exc.code, exc.message, exc.details, exc.headers())
        await response(scope, receive, send)
