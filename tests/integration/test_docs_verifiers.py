"""The `v1` and `v1a` verifiers printed in docs/fanout.md, run as printed against a real forward:
the `http` handler signs with `signing = "both"` and posts to a recording server on 127.0.0.1."""

from __future__ import annotations

import base64
import os
import pathlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.clock import SystemClock
from service.handlers.base import HandlerDeps, Ok
from service.handlers.http import HttpForwardHandler
from service.handlers.outbound import Outbound
from tests.deliveries import a_delivery
from tests.sinks import Received, http_sink

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "fanout.md"
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
_KEY, _OTHER = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
PRIVATE_KEY = "whsk_" + base64.b64encode(_KEY.private_bytes_raw()).decode()
PUBLIC_KEY = "whpk_" + base64.b64encode(_KEY.public_key().public_bytes_raw()).decode()
OTHER_PUBLIC_KEY = "whpk_" + base64.b64encode(_OTHER.public_key().public_bytes_raw()).decode()


def documented_verifiers() -> dict[str, Callable[..., bool]]:
    """`verify_v1` and `verify_v1a`, from the Python blocks of the doc, executed as printed."""
    names: dict[str, Any] = {}
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S):
        exec(compile(block, str(DOC), "exec"), names)  # noqa: S102 - our own documentation
    return {"v1": names["verify_v1"], "v1a": names["verify_v1a"]}


@pytest.fixture
async def forwarded() -> AsyncIterator[Received]:
    """One `training.completed` event forwarded, signed both ways, as the sink received it."""
    outbound = Outbound()
    try:
        async with http_sink() as sink, httpx.AsyncClient(trust_env=False) as client:
            deps = HandlerDeps(client, SystemClock(), "https://receiver.example", outbound=outbound)
            handler = HttpForwardHandler.from_options(
                {
                    "url": f"{sink.url}/hooks/llmtune",
                    "allow_private": True,
                    "signing": "both",
                    "secret": SECRET,
                    "private_key": PRIVATE_KEY,
                },
                deps,
            )
            delivery = a_delivery(route="forward", payload={"event": "training.completed"})
            assert await handler.handle(delivery) == Ok("HTTP 200")
            [received] = sink.received
            yield received
    finally:
        await outbound.aclose()


def test_the_doc_has_both_verifiers() -> None:
    assert set(documented_verifiers()) == {"v1", "v1a"}


def test_v1_verifies_a_real_forward_and_nothing_else(forwarded: Received) -> None:
    verify = documented_verifiers()["v1"]
    headers, body = forwarded.headers, forwarded.body
    assert verify(SECRET, headers, body)
    assert not verify(SECRET, headers, body + b" ")
    assert not verify("whsec_" + base64.b64encode(os.urandom(32)).decode(), headers, body)
    assert not verify(SECRET, {**headers, "webhook-id": "dlv_other"}, body)
    assert not verify(SECRET, {**headers, "webhook-timestamp": "1000000000"}, body)


def test_v1a_verifies_a_real_forward_and_nothing_else(forwarded: Received) -> None:
    verify = documented_verifiers()["v1a"]
    headers, body = forwarded.headers, forwarded.body
    assert verify(PUBLIC_KEY, headers, body)
    assert not verify(PUBLIC_KEY, headers, body + b" ")
    assert not verify(OTHER_PUBLIC_KEY, headers, body)
    assert not verify(PUBLIC_KEY, {**headers, "webhook-timestamp": "1000000000"}, body)
