"""`GET /admin/rejections`: recently refused webhook requests, newest first (read scope).

Filters: `reason` (repeatable, one of `service.http.rejections.REASONS`), `since`, `until`. The
rows hold no body and no header value; see `service.http.rejections` for what is recorded and
why.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field
from starlette.requests import Request
from starlette.routing import BaseRoute

from service.http.admin import shapes
from service.http.admin.endpoint import AdminRoute, page_body, parsed_query
from service.http.admin.params import Many, Paged, Time
from service.http.rejections import RejectionReason
from service.services import Services
from service.store import rejections
from service.store.rejections import RejectionFilter, StoredRejection
from service.timestamps import rfc3339


class RejectionsQuery(Paged):
    """`GET /admin/rejections`."""

    scope: ClassVar[str] = "rejections"
    reason: Many[RejectionReason] = Field(
        (), description="why it was refused; repeat for any of several"
    )
    since: Time | None = Field(None, description="only rows received at or after this time")
    until: Time | None = Field(None, description="only rows received before this time")


def rejection_view(row: StoredRejection) -> shapes.Rejection:
    """A refused request as listed."""
    return {
        "id": row.id,
        "receivedAt": rfc3339(row.received_at) or "",
        "reason": row.reason,
        "status": row.status,
        "path": row.path,
        "workspace": row.workspace,
        "clientAddress": row.client_address,
        "bodyBytes": row.body_bytes,
        "bodySha256": row.body_sha256,
        "headerNames": row.header_names,
    }


async def list_rejections(request: Request, svc: Services) -> dict[str, Any]:
    """Refused webhook requests, newest first, filtered by reason, since, until."""
    query = parsed_query(request, RejectionsQuery)
    where = RejectionFilter(reasons=query.reason, since=query.since, until=query.until)
    page = await svc.db.read(
        lambda session: rejections.list_rejections(
            session, where=where, limit=query.limit, cursor=query.after
        )
    )
    return page_body(page, rejection_view, query)


ROUTES: list[BaseRoute] = [
    AdminRoute(
        "/admin/rejections", list_rejections, query=RejectionsQuery, response=shapes.Rejection
    ),
]
