"""Which route template a request's path is logged and recorded under: a job callback URL's
token never reaches a log line."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from service.http import webhooks
from service.http.route_template import loggable_path, matched_route

TOKEN = "callbacktoken" + "9" * 19


async def _endpoint(_: Any) -> Response:
    return Response()


APP = Starlette(
    routes=[
        *webhooks.ROUTES,
        Route("/admin/events", _endpoint),
        Route("/admin/events/{event_id}", _endpoint),
    ]
)


def scope(path: str, method: str = "GET", **routed: Any) -> dict[str, Any]:
    """An HTTP scope for `path`, as the server hands it over (plus what a router added)."""
    return {"type": "http", "method": method, "path": path, "root_path": "", "app": APP} | routed


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        pytest.param(
            f"/webhooks/llmtune/jobs/{TOKEN}",
            "POST",
            ("/webhooks/llmtune/jobs/{token}", {"token": TOKEN}),
            id="callback",
        ),
        pytest.param(
            f"/webhooks/llmtune/jobs/{TOKEN}",
            "GET",
            ("/webhooks/llmtune/jobs/{token}", {"token": TOKEN}),
            id="callback-wrong-method",
        ),
        pytest.param("/webhooks/llmtune", "POST", ("/webhooks/llmtune", {}), id="plain"),
        pytest.param(
            "/webhooks/llmtune/team-a",
            "POST",
            ("/webhooks/llmtune/{workspace}", {"workspace": "team-a"}),
            id="workspace",
        ),
        pytest.param("/nowhere", "GET", None, id="unknown"),
    ],
)
def test_matched_route(path: str, method: str, expected: tuple[str, dict[str, str]] | None) -> None:
    """The template and parameters of the route for a path, whatever the method."""
    assert matched_route(scope(path, method)) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            scope(f"/webhooks/llmtune/jobs/{TOKEN}", "POST"),
            "/webhooks/llmtune/jobs/{token}",
            id="callback-before-routing",
        ),
        pytest.param(
            scope(
                f"/webhooks/llmtune/jobs/{TOKEN}",
                "POST",
                endpoint=_endpoint,
                path_params={"token": TOKEN},
            ),
            "/webhooks/llmtune/jobs/{token}",
            id="callback-routed",
        ),
        pytest.param(
            scope("/admin/events/evt_1", endpoint=_endpoint, path_params={"event_id": "evt_1"}),
            "/admin/events/{event_id}",
            id="id-in-path",
        ),
        pytest.param(scope("/admin/events", endpoint=_endpoint), "/admin/events", id="no-params"),
        pytest.param(
            scope(f"/webhooks/llmtune/jobs/{TOKEN}/extra", "POST"),
            "/webhooks/llmtune/…",
            id="unknown-deep-path-cut",
        ),
        pytest.param(scope("/favicon.ico"), "/favicon.ico", id="unknown-short-path"),
    ],
)
def test_loggable_path(given: dict[str, Any], expected: str) -> None:
    """Logged paths are templates; an unknown path keeps at most two segments."""
    assert loggable_path(given) == expected
