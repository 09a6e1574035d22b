"""send-test-event's deliveries are what each docs version describes, and they verify."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from service.webhooks.normalize import normalize, parse_body
from service.webhooks.samples import FORMATS, Format, sample_delivery
from service.webhooks.verify import signing_keys, verify

NOW = datetime(2025, 11, 8, 14, 22, 31, 250000, tzinfo=UTC)
EVENTS = ["training.started", "training.completed", "training.failed", "model.deployed"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("event", EVENTS)
def test_sample_verifies_and_normalizes(fmt: Format, event: str) -> None:
    """Every sample is signed with the whole secret and normalizes to its event and job."""
    secret = "whsec_sample"
    delivery = sample_delivery(fmt, event, secret, "job-7", NOW)
    verified = verify(signing_keys([secret]), list(delivery.headers.items()), delivery.body)
    assert verified.reading == "whole"
    normalized = normalize(parse_body(delivery.body), delivery.body)
    assert (normalized.type, normalized.job_id) == (event, "job-7")


@pytest.mark.parametrize(
    ("fmt", "header", "prefix", "time_field", "time_value"),
    [
        ("w3", "X-Webhook-Signature", "", "timestamp", "2025-11-08T14:22:31.250Z"),
        ("w2", "X-LLMTune-Signature", "", "deliveredAt", "2025-11-08T14:22:31Z"),
        ("w1", "X-LLMTune-Signature", "sha256=", "created_at", "2025-11-08T14:22:31Z"),
    ],
)
def test_headers_and_envelope(
    fmt: Format, header: str, prefix: str, time_field: str, time_value: str
) -> None:
    """Each version uses its own header, signature form and time field."""
    delivery = sample_delivery(fmt, "training.completed", "s", "job-7", NOW)
    assert delivery.headers[header].startswith(prefix)
    assert len(delivery.headers[header]) == len(prefix) + 64
    assert orjson.loads(delivery.body)[time_field] == time_value
    assert ("X-Webhook-Event" in delivery.headers) is (fmt == "w3")
