"""The floor the service is compared against: a bare Starlette app that does only what no
webhook receiver can skip (read the body, check the HMAC, parse the JSON, answer) and stores
nothing.

    WEBHOOK_SECRETS=<secret> python -m tests.perf.bare_app --port 8001 [--workers 2]

It answers POST /webhooks/llmtune like the service (`{"received": true, "eventId": ...,
"duplicate": false}`, 401 on a bad signature) and GET /readyz, and is run by uvicorn with the
service's own server options (see service/commands/serve.py), loop and HTTP implementation left
on "auto" for both, so the difference measured is the service's work and nothing else. The secret
comes from the environment, like the service's, rather than from tests.helpers: importing that
would load the whole service and inflate this process's memory figure.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

JSON = "application/json"


def _secret() -> bytes:
    # The first of WEBHOOK_SECRETS, keyed whole (whsec_ prefix included) as LLMTune's W3 does.
    first = os.environ.get("WEBHOOK_SECRETS", "").split(",")[0].strip()
    if not first:
        raise RuntimeError("set WEBHOOK_SECRETS to the secret the requests are signed with")
    return first.encode()


def _json(content: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type=JSON)


async def receive_webhook(request: Request) -> Response:
    """Verify, parse and acknowledge one delivery; store nothing."""
    body = await request.body()
    expected = hmac.new(request.app.state.secret, body, hashlib.sha256).hexdigest().encode()
    # Header values are latin-1 text; compare bytes so a non-ASCII header is a 401, not a 500.
    given = request.headers.get("x-webhook-signature", "").encode("latin-1")
    if not hmac.compare_digest(given, expected):
        return _json({"error": "bad_signature"}, 401)
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return _json({"error": "bad_json"}, 400)
    # A stable id per body, as long as the service's; the bare app never sees a duplicate.
    event_id = "evt_" + hashlib.sha256(body).hexdigest()[:26]
    return _json({"received": True, "eventId": event_id, "duplicate": False})


async def readyz(request: Request) -> Response:
    """Always ready: there is no store."""
    return _json({"status": "ready"})


def create_app() -> Starlette:
    """The app; reads the secret once, at start-up."""
    app = Starlette(
        routes=[
            Route("/webhooks/llmtune", receive_webhook, methods=["POST"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )
    app.state.secret = _secret()
    return app


def main() -> None:
    """Serve the app with the service's uvicorn options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "tests.perf.bare_app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        proxy_headers=True,
        forwarded_allow_ips="",
    )


if __name__ == "__main__":
    main()
