"""Property: no body or header combination makes the webhook endpoint answer 5xx.

Bodies are signed by the test (an unsigned fuzz would never get past the 401), and the run goes
against both databases, since storage is where odd values used to fail.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from service.webhooks.normalize import MAX_DEPTH
from tests.helpers import hex_signature, make_settings, running_app

EVENT_NAMES = st.sampled_from(
    [
        "training.started",
        "training.completed",
        "training.failed",
        "model.deployed",
        "deployment.created",
        "usage.threshold_reached",
        "x.test",
        "",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300)
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=20,
)
IDENT = st.one_of(
    st.text(max_size=400), st.integers(-(2**63), 2**63 - 1), st.none(), st.booleans(), JSON
)


@st.composite
def lifecycle_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """Bodies shaped like LLMTune's, with every field free to be odd."""
    data = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "jobId": IDENT,
                "job_id": IDENT,
                "modelName": IDENT,
                "modelId": IDENT,
                "deploymentId": IDENT,
                "artifact": IDENT,
                "metrics": JSON,
                "error": JSON,
                "isTest": JSON,
            },
        )
    )
    body = {"event": draw(EVENT_NAMES | st.text(max_size=300) | JSON), "data": data}
    for field in ("id", "type", "timestamp", "deliveredAt", "created_at", "test"):
        if draw(st.booleans()):
            body[field] = draw(
                IDENT | st.sampled_from(["2025-11-08T14:22:31.000Z", "0001-01-01T00:00:00-23:59"])
            )
    return body


ODD_BODIES = st.sampled_from(
    [
        b'{"event":"training.started","data":{"jobId":123456789012345678901234567890}}',
        b'{"event":"training.completed","data":{"jobId":"j","metrics":{"loss":1e400}}}',
        b'{"event":"training.failed","data":{"jobId":"\\u0000","error":"\\u0000"}}',
        b'{"event":"model.deployed","data":{"deploymentId":"' + b"d" * 3000 + b'"}}',
        b'{"a":1,"a":2}',
        b'\xef\xbb\xbf{"event":"bom"}',
        b'{"event":"deep","data":' + b"[" * 250 + b"]" * 250 + b"}",
        b'{"event":"x","timestamp":"9999-12-31T23:59:59-23:59"}',
        b'{"event":"x","timestamp":"0001-01-01T00:00:00+23:59"}',
    ]
)
BODIES = st.one_of(
    ODD_BODIES,
    lifecycle_payloads().map(orjson.dumps),
    JSON.map(orjson.dumps),
    st.binary(max_size=600),
    st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")),
)
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
)


@st.composite
def signatures(draw: st.DrawFn, body: bytes) -> dict[str, str]:
    """A valid, prefixed, wrong, garbage or missing signature under a header of any case."""
    name = draw(
        st.sampled_from(["X-Webhook-Signature", "x-llmtune-signature", "X-WEBHOOK-SIGNATURE"])
    )
    kind = draw(st.sampled_from(["valid", "prefixed", "upper", "wrong", "garbage", "missing"]))
    values = {
        "valid": hex_signature(body),
        "prefixed": "sha256=" + hex_signature(body),
        "upper": hex_signature(body).upper(),
        "wrong": hex_signature(body + b"x"),
    }
    if kind == "missing":
        return {}
    return {name: values[kind] if kind in values else draw(HEADER_TEXT)}


@pytest.fixture
async def client(engine: AsyncEngine, db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(db_url, max_body_bytes=4096), engine) as client:
        yield client


@settings(
    # `make fuzz` runs many more (FUZZ_EXAMPLES); CI keeps to a short run.
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    # One app per database serves every example: that is the point, not an accident.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_input_gets_a_5xx(client: httpx.AsyncClient, data: st.DataObject) -> None:
    """Any body with any signature and stray headers: 200, 400, 401 or 413, never 5xx."""
    body = data.draw(BODIES, label="body")
    headers = data.draw(signatures(body), label="signature")
    extra = data.draw(
        st.dictionaries(
            st.sampled_from(["X-Webhook-Event", "X-Noise", "Content-Type"]), HEADER_TEXT, max_size=2
        )
    )
    headers = {**extra, **headers}
    encoded = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    response = await client.post("/webhooks/llmtune", content=body, headers=encoded)
    event(f"status {response.status_code}")
    assert response.status_code in {200, 400, 401, 413}, response.text
    signed = any(v.removeprefix("sha256=").lower() == hex_signature(body) for v in headers.values())
    if response.status_code == 200:
        assert signed
    if signed and len(body) <= 4096:
        assert response.status_code == (200 if _acceptable(body) else 400), response.text


class _Refused(ValueError):
    pass


def _refuse(text: str) -> object:
    raise _Refused(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Refused("number out of range")
    return value


def _int_or_float(text: str) -> object:
    # Past 64 bits a JSON integer is read as a float; past a float's range it is refused.
    value = int(text)
    return value if -(2**63) <= value < 2**64 else _finite_float(text)


def _depth_and_strings_ok(value: object, depth: int = 0) -> bool:
    if isinstance(value, str):
        return not any(0xD800 <= ord(char) <= 0xDFFF for char in value)  # lone surrogates
    if isinstance(value, dict):
        items: list[object] = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return True
    return depth < MAX_DEPTH and all(_depth_and_strings_ok(item, depth + 1) for item in items)


def _acceptable(body: bytes) -> bool:
    """The documented body rules, judged with the stdlib's parser instead of the service's:
    strict UTF-8 without BOM, strict JSON (no NaN/Infinity, finite numbers, no lone
    surrogates), an object at the top, at most `MAX_DEPTH` levels of containers."""
    try:
        text = body.decode("utf-8")
        value = json.loads(
            text,
            parse_constant=_refuse,
            parse_float=_finite_float,
            parse_int=_int_or_float,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(value, dict) and _depth_and_strings_ok(value)
