"""Query-parameter parsing for the admin lists; every bad value is a 400 naming the parameter."""

from __future__ import annotations

from datetime import datetime

from starlette.datastructures import QueryParams

from service.events import key_part, parse_time
from service.http.errors import InvalidParameter
from service.store.paging import SortKey, decode_cursor

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def _bad(name: str, expected: str) -> InvalidParameter:
    return InvalidParameter(f"{name} must be {expected}", details={"parameter": name})


def limit_param(query: QueryParams) -> int:
    """`limit`, 1 to 200, default 50."""
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise _bad("limit", f"an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def page_params(query: QueryParams) -> tuple[int, SortKey | None]:
    """`limit` and the decoded `cursor` of a list request."""
    return limit_param(query), cursor_param(query)


def cursor_param(query: QueryParams) -> SortKey | None:
    """The decoded `cursor`, if one was sent."""
    raw = query.get("cursor")
    if raw is None:
        return None
    key = decode_cursor(raw)
    if key is None:
        raise _bad("cursor", "a nextCursor value returned by this API")
    return key


def bool_param(query: QueryParams, name: str) -> bool | None:
    """`true`/`false` (or 1/0), or None when absent."""
    raw = query.get(name)
    if raw is None:
        return None
    if raw.lower() not in _BOOLS:
        raise _bad(name, "true or false")
    return _BOOLS[raw.lower()]


def time_param(query: QueryParams, name: str) -> datetime | None:
    """An RFC 3339 time, or None when absent."""
    raw = query.get(name)
    if raw is None:
        return None
    parsed = parse_time(raw)
    if parsed is None:
        raise _bad(name, "an RFC 3339 time such as 2025-11-08T14:22:31Z")
    return parsed


def text_param(query: QueryParams, name: str) -> str | None:
    """A filter value in the form stored values take (no NUL, long values hashed), or None."""
    raw = query.get(name)
    return key_part(raw) if raw else None
