"""The routes file (`ROUTES_FILE`, TOML): `[[routes]]` tables turned into `Subscription`s, and
`[[workspaces]]` (more LLMTune workspaces, each with its own secrets and webhook path).

`${VAR}` in any string expands from the environment given; a missing variable is an error,
never an empty string (an empty webhook URL would fail much later and less clearly). Every
problem is a `RoutesError` naming the route and what is wrong. Whether a handler exists and
accepts its options is checked where handlers are built (`handlers/registry.py`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from service.events import DEFAULT_WORKSPACE, KNOWN_EVENTS, UNKNOWN_TYPE
from service.routing import DEFAULT_MAX_ATTEMPTS, DEFAULT_ROUTES, Subscription
from service.whsec import WHSEC_PREFIX

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
# Event names are dotted words; patterns add fnmatch's `*`, `?` and `[...]`.
_PATTERN = re.compile(r"[A-Za-z0-9_.\-*?\[\]!]{1,200}")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A workspace name is a path segment: /webhooks/llmtune/{name}.
_WORKSPACE = r"^[a-z0-9][a-z0-9-]{0,39}$"
# `default` is the plain path's workspace; `jobs` is the per-job callback path's prefix.
RESERVED_WORKSPACES = frozenset({DEFAULT_WORKSPACE, "jobs"})
M = TypeVar("M", bound=BaseModel)
# TOML gives exact types: no coercion (`enabled = "yes"` or `max_attempts = true` is refused),
# and never an option's value in a message (options hold secrets).
_STRICT = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)


class RoutesError(ValueError):
    """The routes file is unusable; the message names the route (or line) and the problem."""


@dataclass(frozen=True, slots=True)
class Workspace:
    """Another LLMTune workspace: its deliveries arrive at /webhooks/llmtune/{name}."""

    name: str
    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoutesConfig:
    """What a routes file configures."""

    routes: tuple[Subscription, ...]
    workspaces: tuple[Workspace, ...] = ()


# A name with one of these is a pattern (fnmatch), matched against whatever types arrive.
_GLOB = frozenset("*?[")


def _pattern(value: str) -> str:
    if not _PATTERN.fullmatch(value):
        raise PydanticCustomError("routes", f"{value!r} is not an event name or pattern")
    if value.count("[") != value.count("]"):
        raise PydanticCustomError("routes", f"{value!r} has an unclosed '['")
    return value


class _File(BaseModel):
    model_config = _STRICT
    routes: list[dict[str, Any]] = []
    workspaces: list[dict[str, Any]] = []


class _Route(BaseModel):
    model_config = _STRICT
    name: str = Field(pattern=_NAME)
    handler: str = Field(min_length=1)
    options: dict[str, Any] = {}
    events: list[Annotated[str, AfterValidator(_pattern)]] = Field(min_length=1)
    max_attempts: int = Field(DEFAULT_MAX_ATTEMPTS, ge=1, le=100)
    rate_limit: float | None = Field(None, gt=0, le=10_000)
    enabled: bool = True
    workspaces: list[str] | None = Field(None, min_length=1)


class _Workspace(BaseModel):
    model_config = _STRICT
    name: str = Field(pattern=_WORKSPACE)
    secrets: list[str] = Field(min_length=1)


# What each key must be, said once per key (pydantic's own wording names types, not the file).
_MUST = {
    "routes": "`routes` must be an array of tables ([[routes]])",
    "workspaces": "`workspaces` must be an array of tables ([[workspaces]])",
    "route.name": "name must be 1-100 letters, digits, '.', '_' or '-'",
    "route.handler": "handler must be a handler name such as 'slack'",
    "route.options": "options must be a table",
    "route.events": "events must be a non-empty list such as ['training.*']",
    "route.max_attempts": "max_attempts must be a whole number from 1 to 100",
    "route.rate_limit": "rate_limit must be deliveries per second, above 0",
    "route.enabled": "enabled must be true or false",
    "route.workspaces": "workspaces must be a non-empty list of workspace names",
    "workspace.name": "name must be 1-40 lower-case letters, digits or '-'",
    "workspace.secrets": "secrets must be a non-empty list of non-empty secrets",
}


def _validated(model: type[M], table: dict[str, Any], label: str, kind: str) -> M:
    """`table` as `model`, or the `RoutesError` of its first problem (from key and kind only)."""
    try:
        return model.model_validate(table)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
    prefix = f"{label}: " if label else ""
    unknown = sorted(str(error["loc"][0]) for error in errors if error["type"] == "extra_forbidden")
    if unknown:
        what = "top-level key(s)" if not label else "key(s)"
        raise RoutesError(f"{prefix}unknown {what} {', '.join(unknown)}")
    first = errors[0]
    if first["type"] == "routes":
        raise RoutesError(f"{prefix}{first['msg']}")
    raise RoutesError(prefix + _MUST[f"{kind}{first['loc'][0]}"])


def parse_config(
    text: str, env: Mapping[str, str], custom_events: Iterable[str] = ()
) -> RoutesConfig:
    """Every `[[routes]]` and `[[workspaces]]` table, validated, with `${VAR}` expanded; an
    event name that is no glob must be a known type or one of `custom_events`."""
    try:
        document = _validated(_File, tomllib.loads(text), "", "")
    except tomllib.TOMLDecodeError as exc:
        raise RoutesError(f"not valid TOML: {exc}") from None
    workspaces = tuple(
        _workspace(index, table, env) for index, table in enumerate(document.workspaces)
    )
    _unique("workspace", [w.name for w in workspaces])
    known = {DEFAULT_WORKSPACE} | {w.name for w in workspaces}
    types = KNOWN_EVENTS | {UNKNOWN_TYPE} | frozenset(custom_events)
    routes = tuple(
        _route(index, table, env, known, types) for index, table in enumerate(document.routes)
    )
    _unique("route", [route.name for route in routes])
    return RoutesConfig(routes=routes, workspaces=workspaces)


def parse_routes(text: str, env: Mapping[str, str]) -> tuple[Subscription, ...]:
    """Just the routes of a routes file (see `parse_config`)."""
    return parse_config(text, env).routes


def _unique(kind: str, names: list[str]) -> None:
    for name in names:
        if names.count(name) > 1:
            raise RoutesError(f"{kind} {name!r}: the name is used twice")


def _label(kind: str, index: int, table: dict[str, Any]) -> str:
    name = table.get("name")
    return f"{kind} {name!r}" if isinstance(name, str) else f"{kind} #{index + 1}"


def _workspace(index: int, table: dict[str, Any], env: Mapping[str, str]) -> Workspace:
    label = _label("workspace", index, table)
    found = _validated(_Workspace, table, label, "workspace.")
    if found.name in RESERVED_WORKSPACES:
        raise RoutesError(f"{label}: the name is reserved")
    secrets = [secret.strip() for secret in _expand(label, found.secrets, env)]
    if not all(secret and secret != WHSEC_PREFIX for secret in secrets):
        raise RoutesError(label + ": " + _MUST["workspace.secrets"])
    return Workspace(name=found.name, secrets=tuple(secrets))


def _route(
    index: int,
    table: dict[str, Any],
    env: Mapping[str, str],
    known: set[str],
    types: frozenset[str],
) -> Subscription:
    label = _label("route", index, table)
    found = _validated(_Route, table, label, "route.")
    for event in found.events:
        if not _GLOB.intersection(event) and event not in types:
            raise RoutesError(
                f"{label}: {event!r} is no known event type and no pattern (known: "
                f"{', '.join(sorted(types))}; add others to CUSTOM_EVENT_TYPES)"
            )
    for name in found.workspaces or ():
        if name not in known:
            raise RoutesError(f"{label}: no workspace named {name!r}")
    return Subscription(
        name=found.name,
        handler=found.handler,
        events=tuple(found.events),
        options=MappingProxyType(_expand(label, found.options, env)),
        max_attempts=found.max_attempts,
        rate_limit=found.rate_limit,
        enabled=found.enabled,
        workspaces=None if found.workspaces is None else tuple(found.workspaces),
    )


def _expand(label: str, value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise RoutesError(f"{label}: ${{{name}}} is not set in the environment")
            return env[name]

        return _VARIABLE.sub(lookup, value)
    if isinstance(value, dict):
        return {key: _expand(label, item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(label, item, env) for item in value]
    return value


DEFAULT_FILE = Path("routes.toml")


def load_config(
    path: Path | None, env: Mapping[str, str], custom_events: Iterable[str] = ()
) -> RoutesConfig:
    """The routes file at `path` (or `./routes.toml` when it exists); without one, or when it
    names no routes, the default `log` route (an emptied file still shows events in the log)."""
    chosen = path if path is not None else (DEFAULT_FILE if DEFAULT_FILE.is_file() else None)
    if chosen is None:
        return RoutesConfig(routes=DEFAULT_ROUTES)
    try:
        text = chosen.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RoutesError(f"cannot read {chosen}: {exc}") from None
    try:
        config = parse_config(text, env, custom_events)
    except RoutesError as exc:
        raise RoutesError(f"{chosen}: {exc}") from None
    return config if config.routes else RoutesConfig(DEFAULT_ROUTES, config.workspaces)
