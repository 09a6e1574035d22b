"""Route templates for span names: the template a request matched, never its path."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from service.http.route_template import route_name, route_template


async def _ok(_: Any) -> Response:
    return Response()


ROUTES: list[BaseRoute] = [
    Route("/webhooks/llmtune", _ok, methods=["POST"]),
    Route("/webhooks/llmtune/jobs/{token}", _ok, methods=["POST"]),
    Mount("/admin", routes=[Route("/events/{event_id}", _ok)]),
]


def _scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


class TestRouteTemplate:
    @pytest.mark.parametrize(
        ("method", "path", "expected"),
        [
            pytest.param("POST", "/webhooks/llmtune", "/webhooks/llmtune", id="plain"),
            pytest.param(
                "POST",
                "/webhooks/llmtune/jobs/s3cr3t",
                "/webhooks/llmtune/jobs/{token}",
                id="token",
            ),
            pytest.param("GET", "/webhooks/llmtune", "/webhooks/llmtune", id="wrong-method"),
            pytest.param("GET", "/admin/events/evt_1", "/admin", id="mount"),
            pytest.param("GET", "/nowhere", None, id="no-route"),
        ],
    )
    def test_template_not_path(self, method: str, path: str, expected: str | None) -> None:
        """The matched route's template names the span; a callback token never appears."""
        found = route_template(ROUTES, _scope(method, path))
        assert (None if found is None else found[0]) == expected

    def test_scope_without_an_app_has_no_route(self) -> None:
        """Outside a Starlette app (no `app` in the scope) there is no template."""
        assert route_name(_scope("POST", "/webhooks/llmtune")) is None
