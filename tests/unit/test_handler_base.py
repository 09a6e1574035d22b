"""The shared reading of HTTP answers and `Retry-After` that handlers use."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.handlers.base import Fail, Ok, Outcome, Retry, outcome_for_status

NOW = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        pytest.param(200, None, Ok("HTTP 200"), id="ok"),
        pytest.param(204, None, Ok("HTTP 204"), id="no-content"),
        pytest.param(500, None, Retry("HTTP 500: boom", None), id="server-error"),
        pytest.param(503, "7", Retry("HTTP 503: boom", 7.0), id="unavailable-retry-after"),
        pytest.param(429, "30", Retry("HTTP 429: boom", 30.0), id="rate-limited"),
        pytest.param(408, None, Retry("HTTP 408: boom", None), id="timeout"),
        pytest.param(409, None, Retry("HTTP 409: boom", None), id="conflict"),
        pytest.param(425, None, Retry("HTTP 425: boom", None), id="too-early"),
        pytest.param(400, None, Fail("HTTP 400: boom"), id="bad-request"),
        pytest.param(404, None, Fail("HTTP 404: boom"), id="gone"),
        pytest.param(410, "5", Fail("HTTP 410: boom"), id="gone-ignores-retry-after"),
    ],
)
def test_outcome_for_status(status: int, retry_after: str | None, expected: Outcome) -> None:
    """2xx delivered; 5xx and 408/409/425/429 retried (with Retry-After); other 4xx final."""
    assert outcome_for_status(status, body="boom", retry_after=retry_after, now=NOW) == expected


def test_long_error_bodies_are_cut() -> None:
    """An error page does not fill the attempt record."""
    outcome = outcome_for_status(500, body="x" * 10_000, retry_after=None, now=NOW)
    assert isinstance(outcome, Retry)
    assert len(outcome.error) < 600
