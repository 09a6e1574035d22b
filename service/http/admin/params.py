"""Query parameters of the admin API: declared per endpoint as data, parsed strictly, like Stripe.

Every admin route declares a `QuerySpec` (its filters as `Param` rows, and whether it pages with
`limit` and `cursor`); `endpoint.admin` parses the query against it before the endpoint runs.
Each of these is a 400 `INVALID_PARAMETER` naming the parameter in `details.parameter`:

- a parameter the route does not declare (names are case-sensitive: `jobid` is not `jobId`);
- an empty value, a repeated parameter that takes one value, a value of the wrong kind, or an
  `enum` value outside its choices;
- a `cursor` not issued by this list, or issued for other filters: a cursor carries a hash of the
  filters of the page it came from, so paging on with changed filters cannot skip or repeat rows.

A `repeatable` parameter takes several values by repetition (`type=a&type=b`); a comma inside a
value is refused rather than split, so `type=a,b` cannot silently match nothing. The specs are
plain data, reachable from the route objects (`AdminRoute.operation.query`), so an OpenAPI
document can be generated from them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import orjson
from starlette.datastructures import QueryParams

from service.events import key_part, parse_time
from service.http.errors import InvalidParameter
from service.http.numbers import parse_count
from service.ids import looks_like_id
from service.store.paging import SortKey

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_VALUES = 20  # of one repeatable parameter
_BOOLS = {"true": True, "1": True, "false": False, "0": False}
PAGING = ("limit", "cursor")

# string: free text matched exactly · enum: one of `choices` · boolean: true/false/1/0 ·
# datetime: RFC 3339 · id: one of our ids (`evt_…`).
ParamKind = Literal["string", "enum", "boolean", "datetime", "id"]
Value = str | bool | datetime | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Param:
    """One query parameter an endpoint accepts."""

    name: str
    kind: ParamKind
    description: str
    choices: tuple[str, ...] = ()
    repeatable: bool = False


def bad(name: str, expected: str) -> InvalidParameter:
    """The 400 for parameter `name`, saying what it must be."""
    return InvalidParameter(f"{name} {expected}", details={"parameter": name})


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """The parsed filters of one request, plus `limit` and the cursor's sort key when paged."""

    spec: QuerySpec
    values: Mapping[str, Value]
    limit: int = DEFAULT_LIMIT
    cursor: SortKey | None = None

    def text(self, name: str) -> str | None:
        """A `string`, `enum` or `id` filter, or None when absent."""
        value = self._get(name)
        return value if isinstance(value, str) else None

    def texts(self, name: str) -> tuple[str, ...]:
        """A repeatable filter's values (empty when absent)."""
        value = self._get(name)
        return value if isinstance(value, tuple) else ()

    def flag(self, name: str) -> bool | None:
        """A `boolean` filter, or None when absent."""
        value = self._get(name)
        return value if isinstance(value, bool) else None

    def time(self, name: str) -> datetime | None:
        """A `datetime` filter, or None when absent."""
        value = self._get(name)
        return value if isinstance(value, datetime) else None

    def as_json(self) -> dict[str, object]:
        """The filters as JSON-ready values (for log lines), by name."""
        return {name: _canonical(value) for name, value in sorted(self.values.items())}

    def next_cursor(self, key: SortKey | None) -> str | None:
        """The `nextCursor` to answer with for the last row's sort key (None on the last page)."""
        return None if key is None else encode_cursor(key, self.spec.fingerprint(self.values))

    def _get(self, name: str) -> Value | None:
        # A name the spec does not declare is a bug in the endpoint, not the caller's mistake.
        if name not in self.spec.names:
            raise KeyError(f"{name!r} is not declared by the {self.spec.scope} query")
        return self.values.get(name)


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """What an endpoint accepts in its query string: `params`, plus `limit`/`cursor` if paged.
    `scope` names the list its cursors belong to."""

    scope: str
    params: tuple[Param, ...] = ()
    paged: bool = False

    @property
    def names(self) -> frozenset[str]:
        """The declared filter names (without `limit` and `cursor`)."""
        return frozenset(param.name for param in self.params)

    def parse(self, query: QueryParams) -> ParsedQuery:
        """The request's query, parsed; raises `InvalidParameter` naming the first bad one."""
        allowed = self.names | (frozenset(PAGING) if self.paged else frozenset())
        for name in query:
            if name not in allowed:
                raise _unknown(name, allowed)
        values: dict[str, Value] = {}
        for param in self.params:
            raw = query.getlist(param.name)
            if raw:
                values[param.name] = _parse(param, raw)
        _check_range(values)
        if not self.paged:
            return ParsedQuery(self, values)
        cursor = _cursor(_single("cursor", query.getlist("cursor")), self.fingerprint(values))
        return ParsedQuery(self, values, limit=_limit(query.getlist("limit")), cursor=cursor)

    def fingerprint(self, values: Mapping[str, Value]) -> str:
        """A short hash of this list and its filters (order of repeated values aside)."""
        canonical = sorted((name, _canonical(value)) for name, value in values.items())
        digest = hashlib.sha256(orjson.dumps([self.scope, canonical])).hexdigest()
        return digest[:16]


def _unknown(name: str, allowed: frozenset[str]) -> InvalidParameter:
    hint = next((known for known in allowed if known.lower() == name.lower()), None)
    known = ", ".join(sorted(allowed)) or "none"
    message = f"unknown parameter {name[:64]!r}" + (f" (did you mean {hint}?)" if hint else "")
    return InvalidParameter(
        f"{message}; this endpoint accepts: {known}", details={"parameter": name[:64]}
    )


def _single(name: str, raw: list[str]) -> str | None:
    if len(raw) > 1:
        raise bad(name, "may be given only once")
    return raw[0] if raw else None


def _parse(param: Param, raw: list[str]) -> Value:
    if not param.repeatable:
        one = _single(param.name, raw)
        assert one is not None  # noqa: S101 - raw is not empty here
        return _one(param, one)
    if len(raw) > MAX_VALUES:
        raise bad(param.name, f"takes at most {MAX_VALUES} values")
    for one in raw:
        if "," in one:
            raise bad(param.name, f"takes one value each time: repeat it ({param.name}=a&...=b)")
    return tuple(dict.fromkeys(str(_one(param, one)) for one in raw))


def _one(param: Param, raw: str) -> str | bool | datetime:
    name = param.name
    if not raw:
        raise bad(name, "must not be empty (leave the parameter out to match any value)")
    if param.kind == "boolean":
        if raw.lower() not in _BOOLS:
            raise bad(name, "must be true or false")
        return _BOOLS[raw.lower()]
    if param.kind == "datetime":
        parsed = parse_time(raw)
        if parsed is None:
            raise bad(name, "must be an RFC 3339 time such as 2025-11-08T14:22:31Z")
        return parsed
    if param.kind == "enum":
        if raw not in param.choices:
            raise bad(name, f"must be one of {', '.join(param.choices)}")
        return raw
    if param.kind == "id" and not looks_like_id(raw):
        raise bad(name, "must be an id issued by this service")
    # Stored values were cleaned (no NUL) and long ones hashed the same way.
    return key_part(raw)


def _check_range(values: Mapping[str, Value]) -> None:
    since, until = values.get("since"), values.get("until")
    if isinstance(since, datetime) and isinstance(until, datetime) and until <= since:
        raise bad("until", "must be later than since")


def _limit(raw: list[str]) -> int:
    one = _single("limit", raw)
    if one is None:
        return DEFAULT_LIMIT
    limit = parse_count(one)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise bad("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return limit


def _canonical(value: Value) -> object:
    if isinstance(value, tuple):
        return sorted(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def encode_cursor(key: SortKey, fingerprint: str) -> str:
    """An opaque, URL-safe cursor: the last row's sort key and the filters' fingerprint."""
    raw = orjson.dumps([key[0].isoformat(), key[1], fingerprint])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _cursor(raw: str | None, fingerprint: str) -> SortKey | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        value = None
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)):
        raise bad("cursor", "must be a nextCursor value returned by this list")
    at = parse_time(value[0])
    if at is None or not looks_like_id(value[1]):
        raise bad("cursor", "must be a nextCursor value returned by this list")
    if value[2] != fingerprint:
        raise bad(
            "cursor",
            "was issued for other filters: send the same filters as the first page, "
            "or start again without a cursor",
        )
    return (at, value[1])


def time_range(what: str) -> tuple[Param, Param]:
    """`since` (inclusive) and `until` (exclusive) over the time a list sorts by."""
    return (
        Param("since", "datetime", f"only rows {what} at or after this time"),
        Param("until", "datetime", f"only rows {what} before this time"),
    )
