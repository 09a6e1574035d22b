"""Query parameters of the admin API: one pydantic model per endpoint, parsed strictly, like Stripe.

Every admin route declares a `Query` model (its filters as fields; `Paged` adds `limit` and
`cursor`); `endpoint.admin` parses the query with it before the endpoint runs. Each of these is a
400 `INVALID_PARAMETER` naming the parameter in `details.parameter`:

- a parameter the model does not declare (names are case-sensitive: `jobid` is not `jobId`);
- an empty value, a repeated parameter that takes one value, a value of the wrong kind, or a
  value outside its choices (a `Literal`);
- a `cursor` not issued by this list, or issued for other filters: a cursor carries a hash of the
  filters of the page it came from, so paging on with changed filters cannot skip or repeat rows.

A repeatable parameter (a `tuple` field) takes several values by repetition (`type=a&type=b`); a
comma inside a value is refused rather than split, so `type=a,b` cannot silently match nothing.
The OpenAPI document's parameters are the models' JSON Schemas.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, ClassVar, Self, TypeVar, get_origin

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError
from starlette.datastructures import QueryParams

from service.events import key_part, parse_time
from service.http.errors import InvalidParameter
from service.http.numbers import parse_count
from service.ids import looks_like_id
from service.store.paging import SortKey

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_VALUES = 20  # of one repeatable parameter
PAGING = frozenset({"limit", "cursor"})
# `service.ids.looks_like_id`, as a JSON Schema pattern.
ID_PATTERN = "^[a-z]{1,8}_[0-9a-f]{1,32}$"
_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def bad(name: str, expected: str) -> InvalidParameter:
    """The 400 for parameter `name`, saying what it must be."""
    return InvalidParameter(f"{name} {expected}", details={"parameter": name})


def check(parse: Callable[[str], Any], expected: str) -> Callable[[Any], Any]:
    """A validator: `parse(value)`, or an error whose message is `expected` when it gives None."""

    def validate(value: Any) -> Any:
        parsed = parse(value) if isinstance(value, str) else None
        if parsed is None:
            raise PydanticCustomError("query_value", expected)
        return parsed

    return validate


def _id(value: str) -> str | None:
    return value if looks_like_id(value) else None


def _limit(value: str) -> int | None:
    count = parse_count(value)
    return count if count is not None and 1 <= count <= MAX_LIMIT else None


T = TypeVar("T")
# Free text matched exactly: stored values were cleaned (no NUL) and long ones hashed alike.
Text = Annotated[str, Field(min_length=1), AfterValidator(key_part)]
# A repeatable parameter: its values in order, each once (a comma in one is refused by `parse`).
Many = Annotated[
    tuple[T, ...],
    Field(min_length=1, max_length=MAX_VALUES),
    AfterValidator(lambda values: tuple(dict.fromkeys(values))),
]
Id = Annotated[
    str,
    BeforeValidator(check(_id, "must be an id issued by this service")),
    WithJsonSchema({"type": "string", "pattern": ID_PATTERN}),
]
Flag = Annotated[
    bool, BeforeValidator(check(lambda v: _BOOLS.get(v.lower()), "must be true or false"))
]
Time = Annotated[
    datetime,
    BeforeValidator(check(parse_time, "must be an RFC 3339 time such as 2025-11-08T14:22:31Z")),
]
Limit = Annotated[
    int,
    Field(ge=1, le=MAX_LIMIT),
    BeforeValidator(check(_limit, f"must be an integer from 1 to {MAX_LIMIT}")),
]


class Query(BaseModel):
    """An endpoint's query string; `scope` names the list its cursors belong to."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    scope: ClassVar[str] = "none"
    paged: ClassVar[bool] = False

    @classmethod
    def parse(cls, query: QueryParams) -> Self:
        """The request's query, parsed; raises `InvalidParameter` naming the first bad one."""
        fields = cls.model_fields
        values: dict[str, str | list[str]] = {}
        for name in query:
            if name not in fields:
                raise _unknown(name, frozenset(fields))
            raw = query.getlist(name)
            values[name] = _raw(name, raw, repeatable=get_origin(fields[name].annotation) is tuple)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise _invalid(cls, exc) from None

    @model_validator(mode="after")
    def _check_range(self) -> Self:
        since, until = getattr(self, "since", None), getattr(self, "until", None)
        if isinstance(since, datetime) and isinstance(until, datetime) and until <= since:
            raise bad("until", "must be later than since")
        return self

    def filters(self) -> dict[str, object]:
        """The filters given, as JSON-ready values (for log lines and cursors), by name."""
        given = sorted(self.model_fields_set - PAGING)
        return {name: _canonical(getattr(self, name)) for name in given}


class Paged(Query):
    """A list's query: its filters, plus `limit` and the `cursor` of the previous page."""

    paged: ClassVar[bool] = True
    limit: Limit = Field(DEFAULT_LIMIT, description="rows per page")
    cursor: str | None = Field(
        None,
        min_length=1,
        description="`nextCursor` of the previous page, sent with the same filters",
    )
    _after: SortKey | None = PrivateAttr(None)

    @property
    def after(self) -> SortKey | None:
        """The sort key the cursor continues after (None: the first page)."""
        return self._after

    def fingerprint(self) -> str:
        """A short hash of this list and its filters (order of repeated values aside)."""
        digest = hashlib.sha256(orjson.dumps([self.scope, sorted(self.filters().items())]))
        return digest.hexdigest()[:16]

    def next_cursor(self, key: SortKey | None) -> str | None:
        """The `nextCursor` to answer with for the last row's sort key (None on the last page)."""
        return None if key is None else encode_cursor(key, self.fingerprint())

    @model_validator(mode="after")
    def _decode_cursor(self) -> Self:
        if self.cursor is not None:
            self._after = _cursor(self.cursor, self.fingerprint())
        return self


def _raw(name: str, raw: list[str], *, repeatable: bool) -> str | list[str]:
    if not repeatable and len(raw) > 1:
        raise bad(name, "may be given only once")
    if not all(raw):
        raise bad(name, "must not be empty (leave the parameter out to match any value)")
    if repeatable and any("," in one for one in raw):
        raise bad(name, f"takes one value each time: repeat it ({name}=a&...=b)")
    return raw if repeatable else raw[0]


def _unknown(name: str, allowed: frozenset[str]) -> InvalidParameter:
    hint = next((known for known in allowed if known.lower() == name.lower()), None)
    known = ", ".join(sorted(allowed)) or "none"
    message = f"unknown parameter {name[:64]!r}" + (f" (did you mean {hint}?)" if hint else "")
    return InvalidParameter(
        f"{message}; this endpoint accepts: {known}", details={"parameter": name[:64]}
    )


def _invalid(model: type[Query], exc: ValidationError) -> InvalidParameter:
    # Built from the error's location and type only: never the value sent.
    error = exc.errors(include_url=False, include_input=False)[0]
    name = str(error["loc"][0]) if error["loc"] else "query"
    if error["type"] == "query_value":
        return bad(name, error["msg"])
    if error["type"] == "too_long":
        return bad(name, f"takes at most {MAX_VALUES} values")
    if error["type"] == "literal_error":
        return bad(name, f"must be one of {', '.join(_choices(model, name))}")
    return bad(name, "is not valid")


@functools.cache
def _choices(model: type[Query], name: str) -> tuple[str, ...]:
    schema = model.model_json_schema()["properties"][name]
    for option in [schema, schema.get("items", {}), *schema.get("anyOf", ())]:
        if "enum" in option:
            return tuple(option["enum"])
    return ()


def _canonical(value: object) -> object:
    if isinstance(value, tuple):
        return sorted(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def encode_cursor(key: SortKey, fingerprint: str) -> str:
    """An opaque, URL-safe cursor: the last row's sort key and the filters' fingerprint."""
    raw = orjson.dumps([key[0].isoformat(), key[1], fingerprint])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _cursor(raw: str, fingerprint: str) -> SortKey:
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
