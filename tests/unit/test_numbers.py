"""Numbers from requests, bounded before conversion. Pure."""

from __future__ import annotations

import pytest

from service.http.numbers import parse_count, parse_decimal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0", 0, id="zero"),
        pytest.param("50", 50, id="small"),
        pytest.param("007", 7, id="leading-zeros"),
        pytest.param("9" * 18, 999_999_999_999_999_999, id="eighteen-digits"),
        pytest.param("1" * 19, None, id="nineteen-digits"),
        pytest.param("1" * 5000, None, id="over-pythons-int-limit"),
        pytest.param("", None, id="empty"),
        pytest.param("-1", None, id="negative"),
        pytest.param("+1", None, id="plus-sign"),
        pytest.param(" 1", None, id="space"),
        pytest.param("1.0", None, id="fraction"),
        pytest.param("1e3", None, id="exponent"),
        pytest.param("1_000", None, id="underscore"),
        pytest.param("²", None, id="superscript-digit"),
        pytest.param("٣", None, id="arabic-indic-digit"),
    ],
)
def test_parse_count(text: str, expected: int | None) -> None:
    """One to eighteen ASCII digits are a count; anything else is None, never an exception."""
    assert parse_count(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("15", 15.0, id="whole"),
        pytest.param("0.25", 0.25, id="fraction"),
        pytest.param("0.1", 0.1, id="tenth"),
        pytest.param("1" * 18, float("1" * 18), id="eighteen-digits"),
        pytest.param("1" * 19, None, id="nineteen-digits"),
        pytest.param("9" * 5000, None, id="huge"),
        pytest.param("1.", None, id="trailing-dot"),
        pytest.param(".5", 0.5, id="leading-dot"),
        pytest.param(".", None, id="dot-only"),
        pytest.param("", None, id="empty"),
        pytest.param("1.2.3", None, id="two-dots"),
        pytest.param("-1", None, id="negative"),
        pytest.param("1e2", None, id="exponent"),
        pytest.param("nan", None, id="nan"),
        pytest.param("inf", None, id="inf"),
        pytest.param("1_0", None, id="underscore"),
        pytest.param("²", None, id="superscript-digit"),
    ],
)
def test_parse_decimal(text: str, expected: float | None) -> None:
    """Plain non-negative decimals of at most 18 digits; anything else is None."""
    assert parse_decimal(text) == expected
