"""The test-only control endpoints under `/_fake`: switches, a manual step, recorded traffic, and
an inbox that takes any POST (a destination for forwards in demos and the quick start).

They need no API key and are not recorded as API traffic. Bad input answers 400 with
`{"error": "<message>"}`.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.fake_llmtune.api import fake_of, json_response
from service.fake_llmtune.jobs import iso_millis, job_view
from service.fake_llmtune.state import Answer
from service.fake_llmtune.switches import SwitchError, apply_patch, switches_json


async def _json_object(request: Request) -> dict[str, Any] | None:
    """The body as a JSON object; {} when empty; None when it is anything else."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _bad(message: str) -> Response:
    return json_response(Answer(400, {"error": message}))


async def get_switches(request: Request) -> Response:
    """`GET /_fake/switches`: the switches in force."""
    return json_response(Answer(200, switches_json(fake_of(request).switches)))


async def set_switches(request: Request) -> Response:
    """`POST /_fake/switches`: change the switches named in the body; the result."""
    fake = fake_of(request)
    patch = await _json_object(request)
    if patch is None:
        return _bad("the body must be a JSON object of switches")
    try:
        fake.switches = apply_patch(fake.switches, patch)
    except SwitchError as exc:
        return _bad(str(exc))
    return json_response(Answer(200, switches_json(fake.switches)))


async def advance(request: Request) -> Response:
    """`POST /_fake/advance`: every job (or `{"jobId"}` alone) one step now; those that moved."""
    fake = fake_of(request)
    body = await _json_object(request)
    job_id = None if body is None else body.get("jobId")
    if body is None or (job_id is not None and not isinstance(job_id, str)):
        return _bad('the body must be empty or {"jobId": "<id>"}')
    moved = fake.advance_all(None if job_id is None else [job_id])
    return json_response(Answer(200, {"advanced": [job_view(job) for job in moved]}))


async def received(request: Request) -> Response:
    """`GET /_fake/received`: every API request so far, oldest first."""
    return json_response(Answer(200, {"requests": fake_of(request).received}))


async def deliver_to_inbox(request: Request) -> Response:
    """`POST /_fake/inbox`: keep the request (headers, body as text) and answer 204."""
    body = await request.body()
    fake_of(request).inbox.append(
        {
            "headers": dict(request.headers),
            "body": body.decode("utf-8", "replace"),
            "at": iso_millis(fake_of(request).clock.now()),
        }
    )
    return Response(status_code=204)


async def inbox(request: Request) -> Response:
    """`GET /_fake/inbox`: the requests POSTed to the inbox, oldest first (the last 1,000)."""
    return json_response(Answer(200, {"requests": list(fake_of(request).inbox)}))


async def webhooks(request: Request) -> Response:
    """`GET /_fake/webhooks`: every webhook attempt so far, in the order they were made."""
    attempts = [attempt.as_json() for attempt in fake_of(request).sender.attempts]
    return json_response(Answer(200, {"attempts": attempts}))


def control_routes() -> list[Route]:
    """The `/_fake` routes."""
    return [
        Route("/_fake/switches", get_switches, methods=["GET"]),
        Route("/_fake/switches", set_switches, methods=["POST"]),
        Route("/_fake/advance", advance, methods=["POST"]),
        Route("/_fake/received", received, methods=["GET"]),
        Route("/_fake/webhooks", webhooks, methods=["GET"]),
        Route("/_fake/inbox", deliver_to_inbox, methods=["POST"]),
        Route("/_fake/inbox", inbox, methods=["GET"]),
    ]
