"""POST /webhooks/llmtune through the real app (lifespan, middleware, error handlers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from service.store.events import NewEvent
from service.store.writer import WriteResult
from service.webhooks.samples import FORMATS, Format, sample_delivery
from tests.helpers import (
    AUTH,
    OTHER_SECRET,
    SECRET,
    hex_signature,
    make_settings,
    post_webhook,
    running_app,
    w3_body,
)

NOW = datetime(2025, 11, 8, 14, 22, 31, tzinfo=UTC)


@pytest.fixture
async def client(engine: AsyncEngine, db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(db_url), engine) as client:
        yield client


class BrokenWriter:
    """A writer with a bug in it: every write raises something no handler expects."""

    async def write(self, new: NewEvent) -> WriteResult:
        raise RuntimeError("a bug")


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "code", "details"}
    error: dict[str, object] = body["error"]
    return error


class TestAccepted:
    @pytest.mark.parametrize("fmt", FORMATS)
    @pytest.mark.parametrize("secret", [SECRET, OTHER_SECRET])
    async def test_every_docs_version(
        self, client: httpx.AsyncClient, fmt: Format, secret: str
    ) -> None:
        """W1, W2 and W3 deliveries signed with any configured secret are stored."""
        delivery = sample_delivery(fmt, "training.completed", secret, f"job-{fmt}", NOW)
        response = await client.post(
            "/webhooks/llmtune", content=delivery.body, headers=delivery.headers
        )
        assert response.status_code == 200
        body = response.json()
        assert body["received"] is True
        assert body["duplicate"] is False
        assert body["eventId"].startswith("evt_")

    async def test_duplicate_is_acknowledged_and_counted(self, client: httpx.AsyncClient) -> None:
        """The same event twice: 200 both times, the second flagged duplicate, same id."""
        first = await post_webhook(client, w3_body())
        second = await post_webhook(client, w3_body())
        assert second.status_code == 200
        assert second.json() == {
            "received": True,
            "eventId": first.json()["eventId"],
            "duplicate": True,
        }
        event = (await client.get(f"/admin/events/{first.json()['eventId']}", headers=AUTH)).json()
        assert event["duplicateCount"] == 1

    async def test_unknown_event_is_stored(self, client: httpx.AsyncClient) -> None:
        """A validly signed event with an unexpected name is acknowledged and listed."""
        response = await post_webhook(client, b'{"event":"dashboard.test_ping","data":{}}')
        assert response.status_code == 200
        listed = (await client.get("/admin/events?type=dashboard.test_ping", headers=AUTH)).json()
        assert len(listed["items"]) == 1

    async def test_pretty_non_ascii_body_verified_over_raw_bytes(
        self, client: httpx.AsyncClient
    ) -> None:
        """Whitespace and UTF-8 are signed as sent and stored byte for byte."""
        raw = '{\n  "event": "training.failed",\n  "data": {"jobId": "jöb", "error": "échec ✗"}\n}'
        body = raw.encode("utf-8")
        response = await post_webhook(client, body)
        assert response.status_code == 200
        detail = await client.get(f"/admin/events/{response.json()['eventId']}", headers=AUTH)
        assert detail.json()["rawBody"] == raw

    async def test_content_type_is_not_checked(self, client: httpx.AsyncClient) -> None:
        """Senders vary: the signature and the JSON parse decide, not Content-Type."""
        body = w3_body(job_id="job-ct")
        headers = {"X-Webhook-Signature": hex_signature(body), "Content-Type": "text/plain"}
        assert (await post_webhook(client, body, headers)).status_code == 200


# The word each refusal's message must carry, so an operator reading it knows what to fix.
MESSAGE_WORD = {
    "missing_signature": "missing",
    "malformed_signature": "malformed",
    "signature_mismatch": "does not match",
}


class TestRejected:
    @pytest.mark.parametrize(
        ("headers", "status", "code", "reason"),
        [
            pytest.param({}, 401, "MISSING_SIGNATURE", "missing_signature", id="missing"),
            pytest.param(
                {"X-Webhook-Signature": "nothex"},
                401,
                "INVALID_SIGNATURE",
                "malformed_signature",
                id="malformed",
            ),
            pytest.param(
                {"X-Webhook-Signature": hex_signature(b"other body")},
                401,
                "INVALID_SIGNATURE",
                "signature_mismatch",
                id="wrong",
            ),
            pytest.param(
                {"X-Webhook-Signature": hex_signature(w3_body(), "whsec_not_ours")},
                401,
                "INVALID_SIGNATURE",
                "signature_mismatch",
                id="wrong-secret",
            ),
        ],
    )
    async def test_signature_failures(
        self,
        client: httpx.AsyncClient,
        headers: dict[str, str],
        status: int,
        code: str,
        reason: str,
    ) -> None:
        """Missing, malformed and wrong signatures get 401 with a reason, and nothing is stored."""
        response = await post_webhook(client, w3_body(), headers)
        assert response.status_code == status
        error = error_of(response)
        assert error["code"] == code
        assert error["details"] == {"reason": reason}
        assert MESSAGE_WORD[reason] in str(error["message"])
        assert (await client.get("/admin/events", headers=AUTH)).json()["items"] == []

    async def test_w1_body_signature_is_not_proof(self, client: httpx.AsyncClient) -> None:
        """A W1 body carrying only an in-body signature is refused with its own reason."""
        body = b'{"id":"evt_1","type":"training.completed","signature":"sha256=abc"}'
        response = await post_webhook(client, body, {})
        assert response.status_code == 401
        assert error_of(response)["details"] == {"reason": "body_signature_unsupported"}

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            pytest.param(b"not json", "invalid_json", id="text"),
            pytest.param(b"[1,2,3]", "not_an_object", id="array"),
            pytest.param(b'{"a": NaN}', "invalid_json", id="nan"),
            pytest.param(b"\xff\xfe{}", "invalid_json", id="bad-utf8"),
            pytest.param(b"", "invalid_json", id="empty"),
        ],
    )
    async def test_signed_but_not_a_json_object(
        self, client: httpx.AsyncClient, body: bytes, reason: str
    ) -> None:
        """A correctly signed body that is not a JSON object is 400 INVALID_JSON."""
        response = await post_webhook(client, body)
        assert response.status_code == 400
        error = error_of(response)
        assert error["code"] == "INVALID_JSON"
        assert error["details"] == {"reason": reason}

    async def test_too_large_by_content_length(self, engine: AsyncEngine, db_url: str) -> None:
        """A declared length over the cap is refused before the body is read."""
        settings = make_settings(db_url, max_body_bytes=2048)
        async with running_app(settings, engine) as client:
            body = b'{"pad":"' + b"x" * 4096 + b'"}'
            response = await post_webhook(client, body)
        assert response.status_code == 413
        assert error_of(response)["code"] == "PAYLOAD_TOO_LARGE"

    async def test_too_large_while_streaming(self, engine: AsyncEngine, db_url: str) -> None:
        """A chunked body without Content-Length is cut off once it passes the cap."""
        settings = make_settings(db_url, max_body_bytes=2048)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"x" * 1024

        async with running_app(settings, engine) as client:
            response = await client.post("/webhooks/llmtune", content=chunks())
        assert response.status_code == 413

    async def test_no_secret_configured_refuses_everything(
        self, engine: AsyncEngine, db_url: str
    ) -> None:
        """With no secret, every delivery is 401, and start-up warned about it."""
        with capture_logs() as lines:
            async with running_app(make_settings(db_url, webhook_secrets=[]), engine) as client:
                response = await post_webhook(client, w3_body())
        assert response.status_code == 401
        assert error_of(response)["details"] == {"reason": "no_secret_configured"}
        warnings = [line["event"] for line in lines if line["log_level"] == "warning"]
        assert warnings[0] == "no_webhook_secret"

    async def test_signed_invalid_body_is_logged_at_warning(
        self, client: httpx.AsyncClient
    ) -> None:
        """A signed body refused as invalid writes its request line at warning, with the reason."""
        with capture_logs() as lines:
            response = await post_webhook(client, b"[1]")
        assert response.status_code == 400
        [line] = [line for line in lines if line["event"] == "request"]
        assert (line["log_level"], line["status"], line["reason"]) == (
            "warning",
            400,
            "not_an_object",
        )


class TestUnsignedMode:
    async def test_unsigned_is_stored_as_unverified(self, engine: AsyncEngine, db_url: str) -> None:
        """WEBHOOK_ALLOW_UNSIGNED stores unsigned bodies flagged verified=false, and says so."""
        settings = make_settings(db_url, webhook_allow_unsigned=True)
        with capture_logs() as lines:
            async with running_app(settings, engine):
                pass
        assert "unsigned_webhooks_allowed" in [line["event"] for line in lines]
        async with running_app(settings, engine) as client:
            response = await post_webhook(client, w3_body(), {})
            assert response.status_code == 200
            event_id = response.json()["eventId"]
            event = (await client.get(f"/admin/events/{event_id}", headers=AUTH)).json()
            assert event["verified"] is False
            wrong = await post_webhook(
                client, w3_body(job_id="j2"), {"X-Webhook-Signature": "0" * 64}
            )
            assert wrong.status_code == 401


class TestErrorShape:
    async def test_unknown_path_is_404_in_our_shape(self, client: httpx.AsyncClient) -> None:
        """Unknown paths answer LLMTune's error shape."""
        response = await client.get("/nowhere")
        assert response.status_code == 404
        assert error_of(response)["code"] == "NOT_FOUND"

    async def test_wrong_method_is_405_in_our_shape(self, client: httpx.AsyncClient) -> None:
        """GET on the webhook endpoint is 405, same shape."""
        response = await client.get("/webhooks/llmtune")
        assert response.status_code == 405
        assert error_of(response)["code"] == "METHOD_NOT_ALLOWED"

    async def test_unexpected_error_is_500_with_the_request_id(
        self, engine: AsyncEngine, db_url: str
    ) -> None:
        """A bug answers 500 in our shape; its traceback line and request line carry the id."""
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
            async with running_app(make_settings(db_url), engine, writer=BrokenWriter()) as client:
                response = await post_webhook(client, w3_body(), None)
        assert response.status_code == 500
        assert error_of(response)["code"] == "INTERNAL_ERROR"
        request_id = response.headers["x-request-id"]
        by_event = {line["event"]: line for line in lines}
        assert by_event["unhandled_error"]["request_id"] == request_id
        assert (by_event["request"]["request_id"], by_event["request"]["log_level"]) == (
            request_id,
            "error",
        )

    async def test_request_id_is_echoed(self, client: httpx.AsyncClient) -> None:
        """A sane X-Request-Id is echoed; otherwise one is generated."""
        given = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123"
        made = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith tab"})
        assert made.headers["x-request-id"] != "bad id\twith tab"
        assert len(made.headers["x-request-id"]) == 32


async def test_metrics_count_outcomes(client: httpx.AsyncClient) -> None:
    """Stored, duplicate and refused deliveries show up in /metrics with bounded labels."""
    await post_webhook(client, w3_body())
    await post_webhook(client, w3_body())
    await post_webhook(client, w3_body(), {})
    await post_webhook(client, orjson.dumps({"event": "x" * 300}))
    text = (await client.get("/metrics")).text
    assert (
        'llmtune_webhooks_received_total{event_type="training.completed",outcome="stored"} 1.0'
        in text
    )
    assert (
        'llmtune_webhooks_received_total{event_type="training.completed",outcome="duplicate"} 1.0'
        in text
    )
    assert 'llmtune_webhooks_received_total{event_type="other",outcome="stored"} 1.0' in text
    assert 'llmtune_webhook_signature_failures_total{reason="missing_signature"} 1.0' in text
    assert 'llmtune_webhook_duplicates_total{event_type="training.completed"} 1.0' in text
    assert "llmtune_webhook_ingest_seconds_count 4.0" in text
    # Three deliveries reached the writer one after another: three batches of one.
    assert "llmtune_ingest_batch_events_count 3.0" in text
    assert "llmtune_ingest_batch_events_sum 3.0" in text


async def test_full_write_queue_answers_503_overloaded(engine: AsyncEngine, db_url: str) -> None:
    """Deliveries beyond INGEST_QUEUE_LIMIT waiting at once get 503 OVERLOADED with a short
    Retry-After; those that got 200 are stored."""
    settings = make_settings(db_url, ingest_queue_limit=1)
    async with running_app(settings, engine) as client:
        bodies = [w3_body(job_id=f"job-{n}") for n in range(4)]
        responses = await asyncio.gather(*(post_webhook(client, body) for body in bodies))
        metrics = (await client.get("/metrics")).text
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 503, 503, 503]
    for refused in responses[1:]:
        assert error_of(refused)["code"] == "OVERLOADED"
        assert refused.headers["retry-after"] == "1"
    assert 'outcome="overloaded"} 3.0' in metrics
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.text("SELECT count(*) FROM events"))).scalar_one()
    assert stored == 1
