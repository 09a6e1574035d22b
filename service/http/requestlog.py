"""Pure ASGI middleware, outermost: a request id on every log line, and one line per request.

The id comes from a sane `X-Request-Id` header or is generated, and is echoed in the response.
The closing line is the request's canonical line (`service.logs`): method, path, status, client
address, duration, plus whatever the code below annotated (the ingest outcome of a webhook).
Paths are logged by their route's template (`service.http.route_template`): a job callback
URL's token is a credential. The client address is the peer's, or `X-Forwarded-For`'s when
uvicorn was told to trust the peer as a proxy (`FORWARDED_ALLOW_IPS`); uvicorn rewrites the
scope before we see it.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import logs
from service.http.route_template import loggable_path

log = structlog.get_logger("service.request")
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Probes and scrapes arrive every few seconds; their lines are only wanted when debugging.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestLogMiddleware:
    """Binds `request_id` for the request's log lines and writes its canonical line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        # Each request runs in its own task (own context) and request_id is the only key bound
        # here, so setting it and resetting it after (tokens: cheap) leaves nothing behind.
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            with logs.canonical_line() as line:
                try:
                    await self.app(scope, receive, send_with_id)
                except Exception:
                    # Starlette's error middleware has answered 500 and logged the traceback
                    # with this request's id; re-raising would make the server log it twice.
                    line.raise_level("error")
                finally:
                    _write(scope, line, status, time.perf_counter() - started)
        finally:
            structlog.contextvars.reset_contextvars(**bound)


def _write(scope: Scope, line: logs.CanonicalLine, status: int, elapsed: float) -> None:
    if status >= 500:
        line.raise_level("error")
    elif scope["path"] in QUIET_PATHS and line.level == "info":
        line.level = "debug"
    client = scope.get("client")
    log.log(
        logs.LEVELS[line.level],
        "request",
        method=scope["method"],
        path=loggable_path(scope),
        status=status,
        client=client[0] if client else None,
        duration_ms=round(elapsed * 1000, 2),
        **line.fields,
    )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _SANE_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex
