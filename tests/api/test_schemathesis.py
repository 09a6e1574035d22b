"""Schemathesis against the app in process, on both databases, from the app's OpenAPI document:
no operation answers 5xx, and every answer has a documented status, content type and shape.

Schemathesis calls the ASGI app itself (its own event-loop thread runs the app's lifespan, which
the fixture stops at the end) with a write-scope admin token, a few examples per operation
(`API_FUZZ_EXAMPLES` for a longer run by hand). Jobs go to the fake LLMTune under uvicorn on a
free port of 127.0.0.1. Before schemathesis starts, the fixture stores rows through the API (a
test event, its delivery run by the worker, a job), so that lists answer items, and
`test_stored_rows_conform` asks for each of them by id: random ids only ever find nothing.

Left out: `GET /admin/stream`, whose answer never ends (tests/api/test_stream.py covers it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
import uvicorn
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp

from service.app import create_app
from service.fake_llmtune import FakeConfig, create_fake_app
from service.http.admin.openapi import build_document
from service.http.admin.routes import operations
from tests.helpers import ADMIN_TOKEN, AUTH, SECRET, make_settings

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CONFIG: dict[str, Any] = {
    "generation": {"max-examples": EXAMPLES},
    # One request per example: the stateful phase chains operations (minutes, not seconds).
    "phases": {"stateful": {"enabled": False}},
    "auth": {"openapi": {"adminToken": {"bearer": ADMIN_TOKEN}}},
    "operations": [
        {"include-name": "GET /admin/stream", "enabled": False},
    ],
}
JOB = {"baseModel": "meta-llama/Llama-3.3-70B-Instruct", "dataset": "s3://bucket/train.jsonl"}
LLMTUNE_KEY = "sk_test_fake"

# The document as the app serves it (tests/api/test_openapi.py checks that the two are the
# same), built here so that pytest lists one test per operation.
schema = schemathesis.openapi.from_dict(
    build_document(operations()), config=schemathesis.Config.from_dict(CONFIG)
)


@dataclass(frozen=True, slots=True)
class Seeded:
    """The app under test and the ids of the rows stored in it for the run."""

    app: ASGIApp
    ids: dict[str, str]


def _call(app: ASGIApp, label: str, **data: Any) -> Any:
    """One request built by hand (not generated), answered by `app`; its JSON body."""
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    return operation.Case(**data).call(app=app, headers=AUTH).json()


def _seed(app: ASGIApp) -> dict[str, str]:
    """A test event, its delivery (the worker runs it: attempts), a job; their ids."""
    event = _call(app, "POST /admin/test-event", body={}, media_type="application/json")
    job = _call(app, "POST /admin/jobs", body=JOB, media_type="application/json")
    deadline = time.monotonic() + 10
    query = {"eventId": event["id"], "status": "succeeded"}
    while not (delivered := _call(app, "GET /admin/deliveries", query=query)["items"]):
        assert time.monotonic() < deadline, "the worker did not deliver the test event"
        time.sleep(0.05)
    return {"event_id": event["id"], "delivery_id": delivered[0]["id"], "job_id": job["id"]}


@contextlib.contextmanager
def fake_llmtune() -> Iterator[str]:
    """The fake LLMTune under uvicorn in a thread of its own (its jobs step only when told, so
    it sends no webhooks); its API's base URL."""
    app = create_fake_app(FakeConfig(secret=SECRET, step_seconds=0, api_key=LLMTUNE_KEY))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the fake LLMTune did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def seeded(request: pytest.FixtureRequest) -> Iterator[Seeded]:
    """The app on each database (its worker running, jobs going to the fake LLMTune) with a
    few rows stored."""
    db_url: str = request.getfixturevalue(f"{request.param}_url")
    with fake_llmtune() as llmtune_url:
        settings = make_settings(
            db_url, run_worker=True, llmtune_api_url=llmtune_url, llmtune_api_key=LLMTUNE_KEY
        )
        app = create_app(settings)
        try:
            yield Seeded(app, _seed(app))
        finally:
            shutdown_lifespans()


@schema.parametrize()
def test_api_conforms_to_its_document(case: schemathesis.Case[Any], seeded: Seeded) -> None:
    """No 5xx; status, content type and body as documented."""
    case.call_and_validate(app=seeded.app, checks=CHECKS)


# Every read by id, a job's refresh, and the retry of a delivery that succeeded (409).
BY_ID = [
    *sorted(f"GET {op.path}" for op in operations() if "{" in op.path and op.method == "GET"),
    "POST /admin/deliveries/{delivery_id}/retry",
    "POST /admin/jobs/{job_id}/refresh",
]


@pytest.mark.parametrize("label", BY_ID)
def test_stored_rows_conform(seeded: Seeded, label: str) -> None:
    """Each stored row, asked for by id: answered as documented (a detail, or a 409)."""
    operation = schema.find_operation_by_label(label)
    assert operation is not None
    names = [param.name for param in operation.path_parameters]
    case = operation.Case(path_parameters={name: seeded.ids[name] for name in names})
    response = case.call_and_validate(app=seeded.app, headers=AUTH, checks=CHECKS)
    assert response.status_code in (200, 409)


JSON = "application/json"
# What schemathesis found, kept as explicit cases: each was a 5xx (a 503 from PostgreSQL refusing
# NUL, a 500 from a non-ASCII header value on the way to LLMTune).
FOUND = [
    pytest.param(
        "POST /webhooks/llmtune/jobs/{token}",
        {"path_parameters": {"token": "a" * 15 + "\x00"}},
        404,
        id="nul-in-callback-token",
    ),
    pytest.param(
        "POST /admin/jobs",
        {"body": JOB | {"dataset": "s3://bucket/\x00"}, "media_type": JSON},
        400,
        id="nul-in-job-field",
    ),
    pytest.param(
        "POST /admin/jobs",
        {"body": JOB | {"idempotencyKey": "clé-1"}, "media_type": JSON},
        400,
        id="non-ascii-idempotency-key",
    ),
]


@pytest.mark.parametrize(("label", "data", "status"), FOUND)
def test_found_cases_stay_fixed(
    seeded: Seeded, label: str, data: dict[str, Any], status: int
) -> None:
    """Each input that once got a 5xx is now refused as documented."""
    operation = schema.find_operation_by_label(label)
    assert operation is not None
    response = operation.Case(**data).call_and_validate(app=seeded.app, headers=AUTH, checks=CHECKS)
    assert response.status_code == status
