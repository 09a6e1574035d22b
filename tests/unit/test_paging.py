"""Opaque cursors round-trip; anything else is refused, never crashes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.store.paging import Page, decode_cursor, encode_cursor


def test_round_trip() -> None:
    """A cursor decodes to the sort key it was made from."""
    key = (datetime(2025, 11, 8, 14, 22, 31, 123456, tzinfo=UTC), "evt_01ab")
    assert decode_cursor(encode_cursor(key)) == key


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        "bm90IGpzb24",
        "WzEsMl0",
        "WyJ4IiwiYSJd",
        "é",
        "WyIyMDI1LTAxLTAxVDAwOjAwOjAwWiIsIlx1MDAwMCJd",
    ],
)
def test_garbage_is_refused(cursor: str) -> None:
    """Cursors that are not ours decode to None (the API answers 400)."""
    assert decode_cursor(cursor) is None


def test_page_cuts_the_lookahead_row() -> None:
    """Fetching limit + 1 rows tells whether another page exists."""
    at = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [(at, "c"), (at, "b"), (at, "a")]
    page = Page.of(rows, 2, key=lambda row: row)
    assert page.items == rows[:2]
    assert page.next_key == (at, "b")
    assert Page.of(rows, 3, key=lambda row: row).next_key is None
