"""Numbers read from requests (query parameters, headers), bounded before any conversion.

Python's `int()` refuses strings over 4300 digits with a ValueError, and both `int()` and
`float()` spend time on long input; nothing a caller sends may reach them unbounded. Pure.
"""

from __future__ import annotations

# 18 digits stay below 2**63, so a count also fits a database BIGINT.
MAX_DIGITS = 18


def parse_count(text: str) -> int | None:
    """A non-negative whole number of 1 to 18 ASCII digits, else None."""
    # isascii: str.isdigit() also accepts digits like "²" that int() refuses.
    if not 1 <= len(text) <= MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def parse_decimal(text: str) -> float | None:
    """A non-negative decimal such as `15` or `0.25` (at most 18 digits, no sign, exponent,
    nan or inf), else None."""
    whole, dot, fraction = text.partition(".")
    digits = whole + fraction
    if not 1 <= len(digits) <= MAX_DIGITS or (dot and not fraction):
        return None
    if not (digits.isascii() and digits.isdigit()):
        return None
    return float(text)
