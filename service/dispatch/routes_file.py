"""The routes file (`ROUTES_FILE`, TOML): `[[routes]]` tables turned into `Route`s.

`${VAR}` in any string expands from the environment given; a missing variable is an error,
never an empty string (an empty webhook URL would fail much later and less clearly). Every
problem is a `RoutesError` naming the route and what is wrong. Whether a handler exists and
accepts its options is checked where handlers are built (`handlers/registry.py`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from service.dispatch.routing import DEFAULT_MAX_ATTEMPTS, DEFAULT_ROUTES, Route

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# Event names are dotted words; patterns add fnmatch's `*`, `?` and `[...]`.
_PATTERN = re.compile(r"[A-Za-z0-9_.\-*?\[\]!]{1,200}")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_KEYS = frozenset({"name", "events", "handler", "options", "max_attempts", "rate_limit", "enabled"})


class RoutesError(ValueError):
    """The routes file is unusable; the message names the route (or line) and the problem."""


def parse_routes(text: str, env: Mapping[str, str]) -> tuple[Route, ...]:
    """Every `[[routes]]` table of a routes file, validated, with `${VAR}` expanded."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RoutesError(f"not valid TOML: {exc}") from None
    tables = document.get("routes", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RoutesError("`routes` must be an array of tables ([[routes]])")
    routes = tuple(_route(index, table, env) for index, table in enumerate(tables))
    names = [route.name for route in routes]
    for name in names:
        if names.count(name) > 1:
            raise RoutesError(f"route {name!r}: the name is used twice")
    return routes


def _route(index: int, table: dict[str, Any], env: Mapping[str, str]) -> Route:
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
    return Route(
        name=name,
        handler=handler,
        events=_events(label, table.get("events")),
        options=MappingProxyType(_expand(label, options, env)),
        max_attempts=_max_attempts(label, table.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
        rate_limit=_rate_limit(label, table.get("rate_limit")),
        enabled=_enabled(label, table.get("enabled", True)),
    )


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


def load_routes(path: Path | None, env: Mapping[str, str]) -> tuple[Route, ...]:
    """The routes from `path` (or `./routes.toml` when it exists), else the default `log` route.

    A file that names no routes at all also gets the default: an operator who empties the file
    still sees events in the log rather than silently nothing.
    """
    chosen = path if path is not None else (DEFAULT_FILE if DEFAULT_FILE.is_file() else None)
    if chosen is None:
        return DEFAULT_ROUTES
    try:
        text = chosen.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RoutesError(f"cannot read {chosen}: {exc}") from None
    return parse_routes(text, env) or DEFAULT_ROUTES
