"""Keyset pagination shared by the admin lists: newest first by (time, id), opaque cursors."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.events import parse_time
from service.ids import looks_like_id

T = TypeVar("T")
U = TypeVar("U")
SortKey = tuple[datetime, str]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of rows and the sort key of its last row when more follow."""

    items: list[T]
    next_key: SortKey | None

    def map(self, view: Callable[[T], U]) -> Page[U]:
        """The same page with each row turned into a plain value."""
        return Page(items=[view(item) for item in self.items], next_key=self.next_key)

    @classmethod
    def of(cls, rows: list[T], limit: int, *, key: Callable[[T], SortKey]) -> Page[T]:
        """Cut `limit + 1` fetched rows to a page; the extra row only says "there is more"."""
        items = rows[:limit]
        more = len(rows) > limit
        return cls(items=items, next_key=key(items[-1]) if more and items else None)


def _after(time_col: Any, id_col: Any, cursor: SortKey) -> sa.ColumnElement[bool]:
    at, last_id = cursor
    return sa.or_(time_col < at, sa.and_(time_col == at, id_col < last_id))


async def fetch_page(
    session: AsyncSession,
    stmt: sa.Select[T],
    *,
    time_col: Any,
    id_col: Any,
    limit: int,
    cursor: SortKey | None,
) -> Page[T]:
    """Rows of `stmt` newest first by (time, id), `limit` of them after `cursor`."""
    stmt = stmt.order_by(time_col.desc(), id_col.desc())
    if cursor is not None:
        stmt = stmt.where(_after(time_col, id_col, cursor))
    rows = list((await session.scalars(stmt.limit(limit + 1))).all())
    time_key, id_key = time_col.key, id_col.key
    return Page.of(rows, limit, key=lambda row: (getattr(row, time_key), getattr(row, id_key)))


def encode_cursor(key: SortKey) -> str:
    """An opaque, URL-safe cursor for a sort key."""
    raw = orjson.dumps([key[0].isoformat(), key[1]])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> SortKey | None:
    """The sort key inside a cursor, or None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)):
        return None
    if not looks_like_id(value[1]):
        return None
    at = parse_time(value[0])
    return None if at is None else (at, value[1])
