"""The shared reading of HTTP answers and `Retry-After` that handlers use."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.handlers.base import Fail, Ok, Outcome, Retry, outcome_for_status, parse_retry_after

NOW = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("120", 120.0, id="seconds"),
        pytest.param(" 5 ", 5.0, id="spaces"),
        pytest.param("Sat, 08 Nov 2025 14:01:00 GMT", 60.0, id="http-date"),
        pytest.param("Sat, 08 Nov 2025 13:00:00 GMT", 0.0, id="date-in-the-past"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("-5", None, id="negative"),
        pytest.param("٣", None, id="non-ascii-digit"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Delta-seconds or an HTTP date, as seconds from now; anything else is ignored."""
    assert parse_retry_after(value, NOW) == expected


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
