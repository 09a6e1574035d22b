"""Bearer-token check for the admin API: who is calling (a named `AdminToken`) and whether it
may write. Tokens are compared in constant time, as bytes (`service.admin_tokens`)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request

from service.admin_tokens import AdminToken, Scope, authenticate
from service.http.errors import Forbidden, Unauthorized

__all__ = [
    "AdminToken",
    "Scope",
    "authenticate",
    "bearer_token",
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


def require_admin(request: Request, tokens: Sequence[AdminToken], *, write: bool) -> AdminToken:
    """The caller's token; `Unauthorized` (401) without a valid one, `Forbidden` (403) when
    `write` is asked of a read-only token."""
    presented = bearer_token(request)
    if presented is None:
        raise Unauthorized("an admin Bearer token is required")
    token = authenticate(presented, tokens)
    if token is None:
        raise Unauthorized("the admin token is not valid")
    if write:
        require_write(token)
    return token


def require_write(token: AdminToken) -> None:
    """Raise `Forbidden` (403) unless `token` has the write scope."""
    if not token.can_write:
        raise Forbidden("this token may only read", details={"token": token.name})
