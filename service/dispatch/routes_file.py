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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from service.events import DEFAULT_WORKSPACE
from service.routing import DEFAULT_MAX_ATTEMPTS, DEFAULT_ROUTES, Subscription
from service.whsec import WHSEC_PREFIX

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# Event names are dotted words; patterns add fnmatch's `*`, `?` and `[...]`.
_PATTERN = re.compile(r"[A-Za-z0-9_.\-*?\[\]!]{1,200}")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_KEYS = frozenset(
    {"name", "events", "handler", "options", "max_attempts", "rate_limit", "enabled", "workspaces"}
)
# A workspace name is a path segment: /webhooks/llmtune/{name}.
_WORKSPACE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
# `default` is the plain path's workspace; `jobs` is the per-job callback path's prefix.
RESERVED_WORKSPACES = frozenset({DEFAULT_WORKSPACE, "jobs"})


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


def parse_config(text: str, env: Mapping[str, str]) -> RoutesConfig:
    """Every `[[routes]]` and `[[workspaces]]` table, validated, with `${VAR}` expanded."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RoutesError(f"not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"routes", "workspaces"})
    if unknown:
        raise RoutesError(f"unknown top-level key(s) {', '.join(unknown)}")
    workspaces = tuple(
        _workspace(index, table, env) for index, table in enumerate(_tables(document, "workspaces"))
    )
    _unique("workspace", [w.name for w in workspaces])
    known = {DEFAULT_WORKSPACE} | {w.name for w in workspaces}
    routes = tuple(
        _route(index, table, env, known) for index, table in enumerate(_tables(document, "routes"))
    )
    _unique("route", [route.name for route in routes])
    return RoutesConfig(routes=routes, workspaces=workspaces)


def parse_routes(text: str, env: Mapping[str, str]) -> tuple[Subscription, ...]:
    """Just the routes of a routes file (see `parse_config`)."""
    return parse_config(text, env).routes


def _tables(document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    tables = document.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RoutesError(f"`{key}` must be an array of tables ([[{key}]])")
    return tables


def _unique(kind: str, names: list[str]) -> None:
    for name in names:
        if names.count(name) > 1:
            raise RoutesError(f"{kind} {name!r}: the name is used twice")


def _workspace(index: int, table: dict[str, Any], env: Mapping[str, str]) -> Workspace:
    name = table.get("name")
    label = f"workspace {name!r}" if isinstance(name, str) else f"workspace #{index + 1}"
    if not isinstance(name, str) or not _WORKSPACE.fullmatch(name):
        raise RoutesError(f"{label}: name must be 1-40 lower-case letters, digits or '-'")
    if name in RESERVED_WORKSPACES:
        raise RoutesError(f"{label}: the name is reserved")
    unknown = sorted(set(table) - {"name", "secrets"})
    if unknown:
        raise RoutesError(f"{label}: unknown key(s) {', '.join(unknown)}")
    secrets = _expand(label, table.get("secrets"), env)
    if (
        not isinstance(secrets, list)
        or not secrets
        or not all(isinstance(x, str) and x.strip() and x != WHSEC_PREFIX for x in secrets)
    ):
        raise RoutesError(f"{label}: secrets must be a non-empty list of non-empty secrets")
    return Workspace(name=name, secrets=tuple(secret.strip() for secret in secrets))


def _route(
    index: int, table: dict[str, Any], env: Mapping[str, str], known: set[str]
) -> Subscription:
    name = table.get("name")
    label = f"route {name!r}" if isinstance(name, str) else f"route #{index + 1}"
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RoutesError(f"{label}: name must be 1-100 letters, digits, '.', '_' or '-'")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise RoutesError(f"{label}: unknown key(s) {', '.join(unknown)}")
    handler = table.get("handler")
    if not isinstance(handler, str) or not handler:
        raise RoutesError(f"{label}: handler must be a handler name such as 'slack'")
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise RoutesError(f"{label}: options must be a table")
    return Subscription(
        name=name,
        handler=handler,
        events=_events(label, table.get("events")),
        options=MappingProxyType(_expand(label, options, env)),
        max_attempts=_max_attempts(label, table.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
        rate_limit=_rate_limit(label, table.get("rate_limit")),
        enabled=_enabled(label, table.get("enabled", True)),
        workspaces=_route_workspaces(label, table.get("workspaces"), known),
    )


def _route_workspaces(label: str, value: object, known: set[str]) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
        raise RoutesError(f"{label}: workspaces must be a non-empty list of workspace names")
    for name in value:
        if name not in known:
            raise RoutesError(f"{label}: no workspace named {name!r}")
    return tuple(value)


def _events(label: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise RoutesError(f"{label}: events must be a non-empty list such as ['training.*']")
    for pattern in value:
        if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
            raise RoutesError(f"{label}: {pattern!r} is not an event name or pattern")
        if pattern.count("[") != pattern.count("]"):
            raise RoutesError(f"{label}: {pattern!r} has an unclosed '['")
    return tuple(value)


def _max_attempts(label: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise RoutesError(f"{label}: max_attempts must be a whole number from 1 to 100")
    return value


def _rate_limit(label: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 10_000:
        raise RoutesError(f"{label}: rate_limit must be deliveries per second, above 0")
    return float(value)


def _enabled(label: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise RoutesError(f"{label}: enabled must be true or false")
    return value


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


def load_config(path: Path | None, env: Mapping[str, str]) -> RoutesConfig:
    """The routes file at `path` (or `./routes.toml` when it exists); without one, or when it
    names no routes, the default `log` route (an emptied file still shows events in the log)."""
    chosen = path if path is not None else (DEFAULT_FILE if DEFAULT_FILE.is_file() else None)
    if chosen is None:
        return RoutesConfig(routes=DEFAULT_ROUTES)
    try:
        text = chosen.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RoutesError(f"cannot read {chosen}: {exc}") from None
    config = parse_config(text, env)
    return config if config.routes else RoutesConfig(DEFAULT_ROUTES, config.workspaces)
