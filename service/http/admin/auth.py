"""Bearer-token check for the admin API: who is calling (a named `AdminToken`) and whether it
may write. Tokens are compared in constant time, as bytes (`service.admin_tokens`). A wrong token
is counted per client address (`service.throttle`, shared with the console's sign-in); past the
limit the answer is 429 instead of 401, but the right token is still accepted."""

from __future__ import annotations

from typing import Literal

import structlog
from starlette.requests import Request

from service.admin_tokens import AdminToken, Scope, authenticate
from service.http.errors import Forbidden, TooManyAttempts, Unauthorized
from service.services import Services

log = structlog.get_logger(__name__)
Surface = Literal["api", "console"]

__all__ = [
    "AdminToken",
    "Scope",
    "authenticate",
    "bearer_token",
    "client_address",
    "count_failure",
    "require_admin",
    "require_write",
]


def bearer_token(request: Request) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header, as bytes, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    # Starlette decodes headers as latin-1, so this gives back the exact bytes sent.
    return token.strip().encode("latin-1")


def client_address(request: Request) -> str:
    """The client address as uvicorn decided it (proxy headers only from FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


def count_failure(request: Request, svc: Services, surface: Surface) -> int | None:
    """Count a wrong token from this request's client; the seconds to wait once it has failed
    too often (the caller answers 429), else None."""
    wait = svc.auth_throttle.failed(client_address(request), svc.clock.now())
    outcome = "refused" if wait is None else "throttled"
    svc.metrics.admin_auth_failures.labels(surface, outcome).inc()
    if wait is not None:
        log.warning("admin_auth_throttled", surface=surface, retry_after=wait)
    return wait


def require_admin(request: Request, svc: Services, *, write: bool) -> AdminToken:
    """The caller's token; `Unauthorized` (401) without a valid one (`TooManyAttempts`, 429,
    once this client failed too often), `Forbidden` (403) when `write` is asked of a read-only
    token. No token at all is not counted as a failure."""
    presented = bearer_token(request)
    if presented is None:
        raise Unauthorized("an admin Bearer token is required")
    token = authenticate(presented, svc.admin_tokens)
    if token is None:
        wait = count_failure(request, svc, "api")
        if wait is not None:
            raise TooManyAttempts(
                f"too many failed admin authentications; retry in {wait} s", retry_after=wait
            )
        raise Unauthorized("the admin token is not valid")
    if write:
        require_write(token)
    return token


def require_write(token: AdminToken) -> None:
    """Raise `Forbidden` (403) unless `token` has the write scope."""
    if not token.can_write:
        raise Forbidden("this token may only read", details={"token": token.name})
