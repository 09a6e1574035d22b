"""`POST /webhooks/llmtune`: read the body (size cap, deadline), hand it to ingest, answer.

HTTP only: everything between the bytes and the commit is the ingest service's. The answer is
2xx only after ingest returns, which is after the commit.
"""

from __future__ import annotations

import asyncio
import time

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from service import logs
from service.events import DEFAULT_WORKSPACE
from service.http.context import services
from service.http.errors import BodyTimeout, ClientDisconnected, NotFound, PayloadTooLarge
from service.http.numbers import parse_count
from service.http.rejections import keep_body, recording_refusals
from service.http.responses import JSONResponse
from service.links import WEBHOOK_PATH
from service.services import Services
from service.store import jobs


async def read_body(request: Request, *, limit: int, deadline_seconds: float) -> bytes:
    """The whole body, refusing (413) anything over `limit` bytes before or while reading it,
    and giving up (408) when it has not all arrived within `deadline_seconds`."""
    # A malformed Content-Length is left to the streaming cap below.
    declared = parse_count(request.headers.get("content-length", ""))
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"body exceeds {limit} bytes", details={"limit": limit})
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body exceeds {limit} bytes", details={"limit": limit})
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(
            f"the body did not arrive within {deadline_seconds:g} s",
            details={"receivedBytes": size},
        ) from None
    except ClientDisconnect:
        raise ClientDisconnected("the client disconnected before the body was complete") from None
    return b"".join(chunks)


_UNREAD_OUTCOMES: dict[type[Exception], str] = {
    PayloadTooLarge: "too_large",
    BodyTimeout: "body_timeout",
    ClientDisconnected: "client_disconnected",
}


async def _timed_read(request: Request, svc: Services) -> bytes:
    # Upload time has its own histogram: a stalled client must not inflate ingest latency.
    started = time.perf_counter()
    try:
        body = await read_body(
            request,
            limit=svc.settings.max_body_bytes,
            deadline_seconds=svc.settings.body_timeout_seconds,
        )
        keep_body(request, body)  # for the rejections log, should ingest refuse it
        return body
    except (PayloadTooLarge, BodyTimeout, ClientDisconnected) as exc:
        svc.ingest.count_unread(_UNREAD_OUTCOMES[type(exc)])
        raise
    finally:
        svc.metrics.body_read_seconds.observe(time.perf_counter() - started)


def _headers(request: Request) -> list[tuple[str, str]]:
    # Straight from the ASGI scope: `request.headers` would build a Headers object to read once.
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]


async def receive_webhook(request: Request) -> Response:
    """Read one LLMTune delivery and acknowledge it once ingest has durably stored it."""
    svc = services(request)
    named: str | None = request.path_params.get("workspace")
    workspace = DEFAULT_WORKSPACE if named is None else named
    # The default workspace is served at the plain path only.
    if named == DEFAULT_WORKSPACE or workspace not in svc.ingest.workspaces:
        raise NotFound(f"no workspace {workspace[:40]!r}")
    body = await _timed_read(request, svc)
    accepted = await svc.ingest.accept(
        body, _headers(request), source="webhook", workspace=workspace
    )
    return JSONResponse(
        {"received": True, "eventId": accepted.event_id, "duplicate": accepted.duplicate}
    )


async def receive_job_callback(request: Request) -> Response:
    """A delivery to one job's own callback URL (the `webhookUrl` we registered with it). A
    signed one is an event as on the main endpoint. An unsigned one is only a doorbell: its
    body is never stored or trusted; it makes the service ask LLMTune's API about the job (202)."""
    svc = services(request)
    token: str = request.path_params["token"]
    # NUL is ASCII too, and PostgreSQL refuses it in a query: 404 here, not a 503 from the store.
    if not 16 <= len(token) <= 64 or not token.isascii() or "\x00" in token:
        raise NotFound("no such job callback")
    job = await svc.db.read(lambda session: jobs.job_by_token(session, token, sealer=svc.db.sealer))
    if job is None:
        raise NotFound("no such job callback")
    body = await _timed_read(request, svc)
    headers = _headers(request)
    if svc.settings.job_callbacks_unsigned == "refuse" or svc.ingest.carries_signature(
        headers, body
    ):
        # Signed (verified or refused there), or unsigned where operators refuse doorbells.
        accepted = await svc.ingest.accept(body, headers, source="job-callback")
        return JSONResponse(
            {"received": True, "eventId": accepted.event_id, "duplicate": accepted.duplicate}
        )
    rang = "jobs_disabled" if svc.reconciler is None else await svc.reconciler.ring(job.id)
    svc.metrics.doorbells.labels(rang).inc()
    logs.annotate("info", source="job-callback", doorbell=rang, job=job.id, body_bytes=len(body))
    return JSONResponse({"received": True, "stored": False, "poll": rang}, status_code=202)


# A sender may be configured with or without the trailing slash; both are this endpoint (a
# redirect would be answered with an empty body that LLMTune counts as a failure). Refusals are
# recorded under the route's template: a callback URL's token is a credential.
_CALLBACK = WEBHOOK_PATH + "/jobs/{token}"
_WORKSPACE = WEBHOOK_PATH + "/{workspace}"
ROUTES = [
    Route(_CALLBACK, recording_refusals(receive_job_callback, path=_CALLBACK), methods=["POST"]),
    Route(WEBHOOK_PATH, recording_refusals(receive_webhook, path=WEBHOOK_PATH), methods=["POST"]),
    Route(
        WEBHOOK_PATH + "/",
        recording_refusals(receive_webhook, path=WEBHOOK_PATH),
        methods=["POST"],
    ),
    # Other LLMTune workspaces, each with its own secrets (the routes file's [[workspaces]]).
    Route(_WORKSPACE, recording_refusals(receive_webhook, path=_WORKSPACE), methods=["POST"]),
    Route(
        _WORKSPACE + "/",
        recording_refusals(receive_webhook, path=_WORKSPACE),
        methods=["POST"],
    ),
]
