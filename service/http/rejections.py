"""Records each refused webhook request (401, 400, 404, 408, 413, 431) in the rejections log.

What is kept: time, reason, status, the route's path template (a job callback URL's token is a
credential, so never the real path), workspace, client address, size, header NAMES and the first
16 hex digits of the body's SHA-256. Never the body, never a header value. Recording only
queues a row (`RejectionLog.record`), and any failure in it is swallowed: the sender's answer is
decided by the error handlers alone. Our own failures (503) are not rejections and are skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Literal, get_args

import structlog
from starlette.requests import Request
from starlette.responses import Response

from service.events import clean_text
from service.http.context import services
from service.http.errors import (
    BodyTimeout,
    ClientDisconnected,
    HeadersTooLarge,
    NotFound,
    PayloadTooLarge,
)
from service.http.numbers import parse_count
from service.ids import new_id
from service.store.rejections import NewRejection
from service.webhooks.normalize import BodyError
from service.webhooks.verify import Reason, VerificationError

log = structlog.get_logger(__name__)

BodyReason = Literal["invalid_json", "not_an_object", "too_deep"]
EdgeReason = Literal[
    "too_large", "headers_too_large", "body_timeout", "client_disconnected", "not_found"
]
# Every `reason` a rejection can have (the admin list's `reason` filter takes these).
RejectionReason = Literal[Reason, BodyReason, EdgeReason]
BODY_REASONS: tuple[str, ...] = get_args(BodyReason)
EDGE_REASONS: tuple[str, ...] = get_args(EdgeReason)
REASONS: tuple[str, ...] = get_args(RejectionReason)
MAX_HEADER_NAMES = 40
BODY_STATE = "webhook_body"

Endpoint = Callable[[Request], Awaitable[Response]]


def keep_body(request: Request, body: bytes) -> None:
    """Remember the body read for this request, so a refusal can record its size and hash."""
    setattr(request.state, BODY_STATE, body)


def recording_refusals(endpoint: Endpoint, *, path: str) -> Endpoint:
    """`endpoint`, recording every refusal it raises under the route template `path`."""

    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as exc:
            record_refusal(request, exc, path=path)
            raise

    wrapped.__name__ = endpoint.__name__
    wrapped.__doc__ = endpoint.__doc__
    return wrapped


def record_refusal(request: Request, exc: Exception, *, path: str) -> None:
    """Record `exc` when it is a refusal, under the route template `path`; never raises."""
    refused = _refusal(exc)
    if refused is not None:
        _record(request, exc, path, *refused)


def _refusal(exc: Exception) -> tuple[str, int] | None:
    if isinstance(exc, VerificationError):
        return exc.reason, 401
    if isinstance(exc, BodyError):
        return exc.reason, 400
    for kind, reason in (
        (PayloadTooLarge, "too_large"),
        (HeadersTooLarge, "headers_too_large"),
        (BodyTimeout, "body_timeout"),
        (ClientDisconnected, "client_disconnected"),
        (NotFound, "not_found"),
    ):
        if isinstance(exc, kind):
            return reason, exc.status
    return None


def _record(request: Request, exc: Exception, path: str, reason: str, status: int) -> None:
    try:
        svc = services(request)
        body: bytes | None = getattr(request.state, BODY_STATE, None)
        workspace = request.path_params.get("workspace")
        svc.rejections.record(
            NewRejection(
                id=new_id("rej"),
                received_at=svc.clock.now(),
                reason=reason,
                status=status,
                path=path,
                workspace=clean_text(workspace)[:40] if isinstance(workspace, str) else None,
                client_address=clean_text(request.client.host)[:64] if request.client else None,
                body_bytes=len(body) if body is not None else _declared_size(request, exc),
                body_sha256=hashlib.sha256(body).hexdigest()[:16] if body is not None else None,
                header_names=header_names(request),
            )
        )
    except Exception:  # recording must never change the answer
        log.warning("rejection_not_recorded", reason=reason, exc_info=True)


def _declared_size(request: Request, exc: Exception) -> int | None:
    if isinstance(exc, BodyTimeout) and exc.details:
        received = exc.details.get("receivedBytes")
        return received if isinstance(received, int) else None
    return parse_count(request.headers.get("content-length", ""))


def header_names(request: Request) -> list[str]:
    """The request's header names, lower-cased, each once, in order: never their values."""
    names: dict[str, None] = {}
    for raw_name, _ in request.headers.raw:
        name = clean_text(raw_name.decode("latin-1")).lower()[:64]
        names.setdefault(name, None)
        if len(names) >= MAX_HEADER_NAMES:
            break
    return list(names)
