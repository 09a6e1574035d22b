"""The audit line of the admin API: one `admin_action` log line per mutating call.

It names the token (never its secret), the action, the outcome and what was touched (ids,
counts). Endpoints add their targets with `audit_target`; `endpoint.admin` writes the line once,
whether the call succeeded or was refused, so no mutating endpoint can forget it.
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.requests import Request

from service.admin_tokens import AdminToken

log = structlog.get_logger("service.audit")

_TARGETS = "audit_targets"


def audit_target(request: Request, **targets: Any) -> None:
    """Record what this call touched (ids, counts) for its audit line."""
    found: dict[str, Any] = getattr(request.state, _TARGETS, {})
    found.update(targets)
    setattr(request.state, _TARGETS, found)


def write_audit_line(
    request: Request, token: AdminToken, *, action: str, status: int, error: str | None = None
) -> None:
    """The one `admin_action` line of a mutating call."""
    fields: dict[str, Any] = dict(getattr(request.state, _TARGETS, {}))
    if error is not None:
        fields["error"] = error
    log.info(
        "admin_action",
        token=token.name,
        scope=token.scope,
        action=action,
        method=request.method,
        path=request.url.path,
        status=status,
        **fields,
    )
