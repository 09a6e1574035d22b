"""`GET /admin/openapi.json`: a valid OpenAPI 3.1 document, served to admin tokens, that lists
every route of the app (the console's HTML pages aside) and nothing else, generated from the
routes' declarations. tests/api/test_schemathesis.py checks the app against it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from service.app import create_app
from service.http.admin import openapi, params
from service.http.admin.openapi import build_document
from service.http.admin.params import MAX_LIMIT, MAX_VALUES
from service.http.admin.routes import operations
from service.http.console.routes import ROUTES as CONSOLE_ROUTES
from service.ids import looks_like_id, new_id
from service.job_status import JOB_STATUSES
from tests.helpers import make_settings, running_app

TOKENS = ["ci:read:read-secret-0123456", "ops:write:write-secret-0123456"]
READ = {"Authorization": "Bearer read-secret-0123456"}
DOCUMENT = build_document(operations())
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
async def client(sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app on SQLite with a read and a write token."""
    async with running_app(make_settings(sqlite_url, admin_tokens=TOKENS)) as client:
        yield client


def documented() -> set[tuple[str, str]]:
    """(METHOD, path) of every operation in the document."""
    return {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }


def operation(method: str, path: str) -> dict[str, Any]:
    """One operation object of the document."""
    found: dict[str, Any] = DOCUMENT["paths"][path][method.lower()]
    return found


def parameter(method: str, path: str, name: str) -> dict[str, Any]:
    """One parameter of one operation."""
    [found] = [p for p in operation(method, path)["parameters"] if p["name"] == name]
    assert isinstance(found, dict)
    return found


async def test_served_to_a_read_token_as_generated(client: httpx.AsyncClient) -> None:
    """A read token gets the document generated from `routes.operations()`, as JSON."""
    answer = await client.get(openapi.OPENAPI_PATH, headers=READ)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == orjson.loads(orjson.dumps(DOCUMENT))


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        pytest.param({}, "", 401, id="no-token"),
        pytest.param({"Authorization": "Bearer nope"}, "", 401, id="unknown-token"),
        pytest.param(READ, "?format=yaml", 400, id="undeclared-parameter"),
    ],
)
async def test_refusals_are_in_the_error_shape(
    client: httpx.AsyncClient, headers: dict[str, str], query: str, status: int
) -> None:
    """Like every admin route: 401 without a valid token, 400 for a parameter it does not take."""
    answer = await client.get(openapi.OPENAPI_PATH + query, headers=headers)
    assert answer.status_code == status
    assert set(answer.json()["error"]) == {"message", "code", "details"}


def test_document_is_valid_openapi_3_1() -> None:
    """openapi-spec-validator accepts it (OpenAPI 3.1, its JSON Schemas included)."""
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT)


def test_every_route_of_the_app_is_documented() -> None:
    """Each method of each route the app serves is an operation of the document, and nothing
    else is: a route added without a declaration, or a stale entry, fails here."""
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:"))
    console = {id(route) for route in CONSOLE_ROUTES}
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and id(route) not in console
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert served == documented()
    assert served >= {(op.method, op.path) for op in operations()}


def test_endpoint_exceptions_name_real_operations() -> None:
    """The hand-kept tables in `openapi` name only operations that exist."""
    declared = {(op.method, op.path) for op in operations()}
    for table in (openapi.ALSO_SUCCEEDS, openapi.EXTRA_ERRORS, openapi.MEDIA_TYPES):
        assert set(table) <= declared
    assert declared >= openapi.NO_STORE


def test_admin_operations_answer_their_errors() -> None:
    """Every admin operation has the bearer scheme, 400, 401 and 429 (with Retry-After); writes
    403; ids 404; and every one that reads the store 503, in the error shape."""
    for op in operations():
        spec = operation(op.method, op.path)
        responses = spec["responses"]
        assert spec["security"] == [{"adminToken": []}]
        assert {"400", "401", "429"} <= set(responses)
        assert "Retry-After" in responses["429"]["headers"]
        assert ("403" in responses) == (op.method == "POST")
        by_id = "{" in op.path or 404 in openapi.EXTRA_ERRORS.get((op.method, op.path), {})
        assert ("404" in responses) == by_id
        assert ("503" in responses) == ((op.method, op.path) not in openapi.NO_STORE)
        for status, response in responses.items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}


def test_query_parameters_follow_the_declarations() -> None:
    """Repeatable filters are exploded arrays, enums list their choices, pages take limit and
    cursor, ids in paths are required."""
    types = parameter("GET", "/admin/events", "type")["schema"]
    assert types["type"] == "array"
    assert types["maxItems"] == MAX_VALUES
    assert parameter("GET", "/admin/events", "duplicate")["schema"] == {"type": "boolean"}
    assert parameter("GET", "/admin/jobs", "status")["schema"]["enum"] == list(JOB_STATUSES)
    limit = parameter("GET", "/admin/deliveries", "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, MAX_LIMIT)
    since = parameter("GET", "/admin/rejections", "since")["schema"]
    assert since == {"type": "string", "format": "date-time"}
    assert parameter("GET", "/admin/events/{event_id}", "event_id")["required"] is True
    names = {p["name"] for p in operation("POST", "/admin/deliveries/retry")["parameters"]}
    assert "limit" not in names
    assert "status" in names


def test_bodies_and_answers_come_from_the_models() -> None:
    """Request bodies are the pydantic models' schemas (required when a field is); answers are
    the TypedDict shapes, closed to other keys, pages of them for lists."""
    schemas = DOCUMENT["components"]["schemas"]
    jobs = operation("POST", "/admin/jobs")
    assert jobs["requestBody"]["required"] is True
    assert set(jobs["responses"]) >= {"200", "201", "502"}
    assert operation("POST", "/admin/test-event")["requestBody"]["required"] is False
    assert schemas["JobRequest"]["additionalProperties"] is False
    summary = schemas["JobSummary"]
    assert summary["additionalProperties"] is False
    assert "webhookUrl" in summary["properties"]
    assert "webhookUrl" not in summary["required"]
    listed = operation("GET", "/admin/events")["responses"]["200"]["content"]
    page = listed["application/json"]["schema"]
    assert page["properties"]["items"]["items"] == {"$ref": "#/components/schemas/EventSummary"}
    assert "text/event-stream" in operation("GET", "/admin/stream")["responses"]["200"]["content"]


def test_webhooks_and_probes_are_documented() -> None:
    """Webhooks carry a signature header (optional on job callbacks); probes need nothing."""
    webhook = operation("POST", "/webhooks/llmtune")
    assert {name for entry in webhook["security"] for name in entry} == {
        "signature_webhook_signature",
        "signature_llmtune_signature",
    }
    assert {} not in webhook["security"]
    assert {} in operation("POST", "/webhooks/llmtune/jobs/{token}")["security"]
    assert set(webhook["responses"]) == {"200", "400", "401", "404", "408", "413", "431", "503"}
    for path in ("/healthz", "/readyz", "/metrics"):
        assert operation("GET", path)["security"] == []


@pytest.mark.parametrize(
    "value",
    # A fixed id for the generated one: xdist workers must collect the same test names.
    [
        "evt_0123abcd",
        pytest.param(new_id("dlv"), id="new-id"),
        "job_",
        "EVT_01",
        "evt_0x",
        "evt_01\n",
        "",
    ],
)
def test_id_pattern_is_looks_like_id(value: str) -> None:
    """The documented id pattern accepts exactly what `looks_like_id` does (its `^...$` anchor
    the whole value in JSON Schema's regex dialect, so the body must match all of it)."""
    body = params.ID_PATTERN.removeprefix("^").removesuffix("$")
    assert (re.fullmatch(body, value) is not None) == looks_like_id(value)
