"""`POST /admin/test-event`: a synthetic event, flagged as a test, through the whole pipeline.

It goes through the one ingest service (`source="test"`, trusted: we made it), so it is stored,
routed and delivered exactly like a real one; only `isTest` (from `"test": true` in its body, see
`webhooks.normalize`) and its fresh `test-…` job id tell it apart.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from service.events import DEFAULT_WORKSPACE
from service.http.admin import schemas, shapes
from service.http.admin.audit import audit_target
from service.http.admin.endpoint import AdminRoute
from service.http.errors import InvalidParameter
from service.http.responses import JSONResponse
from service.services import Services
from service.store import deliveries, events
from service.webhooks.samples import sample_body

SyntheticType = Literal[
    "training.started", "training.completed", "training.failed", "model.deployed"
]


class SyntheticRequest(BaseModel):
    """`POST /admin/test-event` body; every field optional (an empty body is fine)."""

    model_config = ConfigDict(extra="forbid")

    event: SyntheticType = "training.completed"
    workspace: str = DEFAULT_WORKSPACE


def _request(raw: bytes) -> SyntheticRequest:
    try:
        return SyntheticRequest.model_validate(orjson.loads(raw or b"{}"))
    except orjson.JSONDecodeError:
        raise InvalidParameter("the body must be a JSON object") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidParameter(f"{name}: {first['msg']}", details={"parameter": name}) from None


def synthetic_payload(event: str, job_id: str, svc: Services) -> bytes:
    """A W3 body for `event`, marked as a test at the top and in `data`."""
    body = sample_body("w3", event, job_id, svc.clock.now())
    body["test"] = True
    body["data"]["test"] = True
    return orjson.dumps(body)


async def send_test_event(request: Request, svc: Services) -> Response:
    """Store a test event (fresh `test-…` job id) and queue it to its routes: 201 with it."""
    wanted = _request(await request.body())
    if wanted.workspace not in svc.ingest.workspaces:
        raise InvalidParameter(
            f"no workspace {wanted.workspace[:40]!r}", details={"parameter": "workspace"}
        )
    job_id = f"test-{secrets.token_hex(8)}"
    accepted = await svc.ingest.accept(
        synthetic_payload(wanted.event, job_id, svc),
        [("content-type", "application/json")],
        source="test",
        trusted=True,
        workspace=wanted.workspace,
    )
    audit_target(request, event_id=accepted.event_id, job_id=job_id, type=wanted.event)

    async def read(session: AsyncSession) -> dict[str, Any]:
        row = await events.get_event(session, accepted.event_id)
        assert row is not None  # noqa: S101 - committed before accept returned
        queued = await deliveries.deliveries_of(session, [row.id])
        return {**schemas.event_summary(row), "routes": sorted(d.route for d in queued)}

    return JSONResponse(await svc.db.read(read), status_code=201)


ROUTES: list[BaseRoute] = [
    AdminRoute(
        "/admin/test-event",
        send_test_event,
        method="POST",
        body=SyntheticRequest,
        response=shapes.SentTestEvent,
        action="test_event.send",
        status=201,
    ),
]
