"""Handlers by name: built-ins, plugins found through the entry-point group, and the errors a
route gets at start-up."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from service.clock import SystemClock
from service.handlers.base import HandlerDeps
from service.handlers.registry import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    RouteError,
    available,
    build_handlers,
)
from service.routing import Subscription

PLUGIN = """
from typing import Any, ClassVar


class EchoHandler:
    name: ClassVar[str] = "echo"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @classmethod
    def from_options(cls, options: Any, deps: Any) -> "EchoHandler":
        return cls(str(options.get("prefix", "")))

    async def handle(self, delivery: Any) -> Any:
        raise NotImplementedError
"""


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Iterator[None]:
    """A real distribution on sys.path declaring an `echo` handler and one that claims `log`."""
    (tmp_path / "echo_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "echo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\necho = echo_plugin:EchoHandler\nlog = echo_plugin:EchoHandler\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("echo_plugin", None)


@pytest.fixture
async def deps() -> AsyncIterator[HandlerDeps]:
    async with httpx.AsyncClient() as http:
        yield HandlerDeps(http=http, clock=SystemClock(), public_url="https://receiver.test")


def test_builtins_are_registered_by_name() -> None:
    """The four built-in handlers answer to their names."""
    assert sorted(BUILTIN) == ["email", "http", "inference", "log", "slack"]


@pytest.mark.usefixtures("installed_plugin")
def test_plugins_come_from_the_entry_point_group() -> None:
    """An installed plugin's handler is available; it cannot take a built-in's name."""
    found = available()
    assert found["echo"].name == "echo"
    assert found["log"] is BUILTIN["log"]


@pytest.mark.usefixtures("installed_plugin")
async def test_a_plugin_route_is_built(deps: HandlerDeps) -> None:
    """A route naming the plugin gets the plugin's handler, built from its options."""
    route = Subscription("echoes", "echo", ("*",), options={"prefix": "> "})
    built = build_handlers([route], deps, available())
    assert getattr(built["echoes"], "prefix", None) == "> "


@pytest.mark.parametrize(
    ("route", "message"),
    [
        pytest.param(
            Subscription("r", "pager", ("*",)), "route 'r': unknown handler 'pager'", id="name"
        ),
        pytest.param(
            Subscription("r", "slack", ("*",), options={}), "route 'r': webhook_url", id="options"
        ),
        pytest.param(
            Subscription("r", "log", ("*",), options={"level": "x"}), "route 'r': level", id="extra"
        ),
    ],
)
async def test_unusable_routes_name_the_route(
    deps: HandlerDeps, route: Subscription, message: str
) -> None:
    """An unknown handler or options its handler refuses stop start-up naming the route."""
    with pytest.raises(RouteError) as caught:
        build_handlers([route], deps, available())
    assert str(caught.value).startswith(message)


async def test_disabled_routes_are_not_built(deps: HandlerDeps) -> None:
    """A disabled route is neither checked nor served."""
    route = Subscription("off", "pager", ("*",), enabled=False)
    assert build_handlers([route], deps, available()) == {}
