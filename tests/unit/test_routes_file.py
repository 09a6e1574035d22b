"""The routes file: what parses, what `${VAR}` becomes, and the one-line errors."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from service.clock import SystemClock
from service.dispatch.routes_file import RoutesError, parse_config, parse_routes
from service.handlers.base import HandlerDeps
from service.handlers.registry import available, build_handlers
from service.routing import DEFAULT_MAX_ATTEMPTS, Subscription

ENV = {"SLACK_URL": "https://hooks.example/T1", "TOKEN": "s3cret"}

FULL = """
[[routes]]
name = "slack-lifecycle"
events = ["training.*", "model.deployed"]
handler = "slack"
options = { webhook_url = "${SLACK_URL}" }
rate_limit = 1

[[routes]]
name = "forward"
events = ["*"]
handler = "http"
max_attempts = 3
enabled = false
options = { url = "https://ops.example/in", headers = ["x-${TOKEN}"] }
"""


def test_full_file() -> None:
    """Every key is read; `${VAR}` expands inside strings, lists and tables."""
    slack, forward = parse_routes(FULL, ENV)
    assert slack == Subscription(
        name="slack-lifecycle",
        handler="slack",
        events=("training.*", "model.deployed"),
        options=slack.options,
        max_attempts=DEFAULT_MAX_ATTEMPTS,
        rate_limit=1.0,
        enabled=True,
    )
    assert dict(slack.options) == {"webhook_url": "https://hooks.example/T1"}
    assert (forward.max_attempts, forward.enabled) == (3, False)
    assert dict(forward.options) == {"url": "https://ops.example/in", "headers": ["x-s3cret"]}


def test_empty_file_has_no_routes() -> None:
    """A file without [[routes]] configures none (the caller decides the default)."""
    assert parse_routes("", ENV) == ()


def _one(**fields: str) -> str:
    base = {"name": '"r1"', "events": '["*"]', "handler": '"log"'}
    lines = [f"{key} = {value}" for key, value in (base | fields).items() if value != "-"]
    return "[[routes]]\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[[routes]\n", "not valid TOML", id="toml"),
        pytest.param("routes = 3\n", "array of tables", id="not-tables"),
        pytest.param(_one(name="-"), "route #1: name", id="no-name"),
        pytest.param(_one(name='"has space"'), "name must be", id="bad-name"),
        pytest.param(_one(events='"*"'), "route 'r1': events must be", id="events-not-list"),
        pytest.param(_one(events="[]"), "route 'r1': events must be", id="events-empty"),
        pytest.param(_one(events='["a b"]'), "'a b' is not an event name", id="bad-pattern"),
        pytest.param(_one(events='["x.[ab"]'), "unclosed", id="unclosed-bracket"),
        pytest.param(_one(handler="-"), "route 'r1': handler", id="no-handler"),
        pytest.param(_one(options='"x"'), "options must be a table", id="options-not-table"),
        pytest.param(_one(max_attempts="0"), "max_attempts", id="zero-attempts"),
        pytest.param(_one(max_attempts="true"), "max_attempts", id="bool-attempts"),
        pytest.param(_one(rate_limit="-1"), "rate_limit", id="negative-rate"),
        pytest.param(_one(enabled='"yes"'), "enabled must be", id="enabled-text"),
        pytest.param(_one(retries="3"), "unknown key(s) retries", id="unknown-key"),
        pytest.param(
            _one(options='{ url = "${MISSING}" }'), "${MISSING} is not set", id="missing-var"
        ),
        pytest.param(_one() + _one(), "route 'r1': the name is used twice", id="duplicate"),
    ],
)
def test_errors_name_the_route_and_the_problem(text: str, message: str) -> None:
    """Each mistake is one line that says which route and what is wrong."""
    with pytest.raises(RoutesError) as caught:
        parse_routes(text, ENV)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


WORKSPACES = """
[[workspaces]]
name = "prod"
secrets = ["${TOKEN}", "whsec_b2xk"]

[[routes]]
name = "prod-slack"
events = ["*"]
handler = "slack"
workspaces = ["prod", "default"]
"""


def test_workspaces_and_narrowed_routes() -> None:
    """`[[workspaces]]` names secrets (expanded); a route may narrow itself to workspaces."""
    config = parse_config(WORKSPACES, ENV)
    [workspace] = config.workspaces
    assert (workspace.name, workspace.secrets) == ("prod", ("s3cret", "whsec_b2xk"))
    assert config.routes[0].workspaces == ("prod", "default")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param('[[workspaces]]\nname = "jobs"\nsecrets = ["x"]', "reserved", id="jobs"),
        pytest.param('[[workspaces]]\nname = "default"\nsecrets = ["x"]', "reserved", id="dflt"),
        pytest.param('[[workspaces]]\nname = "Prod"\nsecrets = ["x"]', "lower-case", id="case"),
        pytest.param('[[workspaces]]\nname = "p"\nsecrets = []', "secrets must", id="none"),
        pytest.param('[[workspaces]]\nname = "p"\nsecrets = ["whsec_"]', "secrets", id="empty"),
        pytest.param(_one(workspaces='["nowhere"]'), "no workspace named 'nowhere'", id="route"),
        pytest.param("[[workspace]]\nname = 1", "unknown top-level key(s) workspace", id="typo"),
    ],
)
def test_workspace_errors(text: str, message: str) -> None:
    """Workspace mistakes name the workspace (or route) and the problem."""
    with pytest.raises(RoutesError) as caught:
        parse_config(text, ENV)
    assert message in str(caught.value)


async def test_the_shipped_example_is_valid() -> None:
    """routes.example.toml parses and every handler accepts its route's options."""
    example = Path(__file__).parents[2] / "routes.example.toml"
    env = {
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x",
        "SMTP_USER": "user",
        "SMTP_PASSWORD": "password",
        "FORWARD_SECRET": "whsec_" + base64.b64encode(b"x" * 32).decode(),
    }
    config = parse_config(example.read_text(), env)
    async with httpx.AsyncClient() as http:
        deps = HandlerDeps(http=http, clock=SystemClock(), public_url="https://receiver.test")
        built = build_handlers(config.routes, deps, available())
    assert sorted(built) == sorted(route.name for route in config.routes)
