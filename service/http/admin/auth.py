"""Bearer-token check for the admin API; tokens compared in constant time, as bytes."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.requests import Request

from service.http.errors import Unauthorized


def bearer_token(request: Request) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header, as bytes, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    # Starlette decodes headers as latin-1, so this gives back the exact bytes sent.
    return token.strip().encode("latin-1")


def require_admin(request: Request, tokens: Sequence[bytes]) -> None:
    """Raise `Unauthorized` unless the request carries one of `tokens`."""
    presented = bearer_token(request)
    if presented is None:
        raise Unauthorized("an admin Bearer token is required")
    # Check every token, so timing tells nothing about which one (or whether any) was close.
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented, token)
    if not matched:
        raise Unauthorized("the admin token is not valid")
