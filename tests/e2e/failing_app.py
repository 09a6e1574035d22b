"""The receiver with one extra route that always fails, served by the real `serve` command:
`python -m tests.e2e.failing_app [serve options]`. Test-only.

`GET /test/fail` raises with a secret in a local variable and behind an Authorization header,
so an end-to-end test can read what an unexpected 500 writes to the log.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.app import create_app
from service.cli import build_parser
from service.commands.serve import cmd_serve

FAIL_PATH = "/test/fail"
LOCAL_SECRET = "whsec_bG9jYWwtdmFyaWFibGUtc2VjcmV0LW1hcmtlcg=="
FACTORY = "tests.e2e.failing_app:create_failing_app"


async def fail(request: Request) -> Response:
    """Always raises; its frame holds a secret, as a handler's options or a request would."""
    secret = LOCAL_SECRET
    authorization = request.headers.get("authorization")
    raise RuntimeError(f"deliberate failure ({len(secret)}, {authorization is not None})")


def create_failing_app() -> Starlette:
    """`create_app()` (settings from the environment) plus `GET /test/fail`."""
    app = create_app()
    app.router.routes.append(Route(FAIL_PATH, fail, methods=["GET"]))
    return app


def main(argv: Sequence[str]) -> int:
    """`serve` with `argv`, on the failing app."""
    args = build_parser().parse_args(["serve", *argv])
    return cmd_serve(args, app=FACTORY)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
