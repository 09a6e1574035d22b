"""`Retry-After` as seconds from now. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.retry_after import parse_retry_after

NOW = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("7", 7.0, id="seconds"),
        pytest.param(" 5 ", 5.0, id="spaces"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("Sat, 08 Nov 2025 14:01:00 GMT", 60.0, id="http-date"),
        pytest.param("Sat, 08 Nov 2025 13:00:00 GMT", 0.0, id="date-in-the-past"),
        pytest.param("Sat, 08 Nov 2025 14:01:00 -0000", 60.0, id="date-without-zone"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("-5", None, id="negative"),
        pytest.param("1.5", None, id="fraction"),
        pytest.param("٣", None, id="non-ascii-digit"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Delta-seconds or an HTTP date, as seconds from now; anything else is ignored."""
    assert parse_retry_after(value, NOW) == expected
