"""The start-up check of `serve` and `worker` (`commands.common.routes_usable`) with `http`
routes that sign `v1a`: a usable key passes; a bad one stops start-up with one line that names
the route and the option, and never shows the key."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from service.commands.common import routes_usable
from tests.helpers import SECRET, make_settings

PRIVATE_KEY = "whsk_" + base64.b64encode(bytes(range(32))).decode()


def routes_file(directory: Path, options: str) -> Path:
    """A routes file with one `http` route, `forward`, with these inline-table options."""
    path = directory / "routes.toml"
    head = '[[routes]]\nname = "forward"\nevents = ["*"]\nhandler = "http"\n'
    path.write_text(f"{head}options = {{ {options} }}\n")
    return path


def check(directory: Path, options: str, capsys: pytest.CaptureFixture[str]) -> tuple[bool, str]:
    """`routes_usable` on that file: its answer and what it printed on stderr."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{directory / 'unused.db'}",
        routes_file=routes_file(directory, options),
    )
    usable = routes_usable(settings)
    return usable, capsys.readouterr().err


URL = 'url = "https://ops.example.com/in"'


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(f'{URL}, signing = "v1a", private_key = "{PRIVATE_KEY}"', id="v1a"),
        pytest.param(
            f'{URL}, signing = "both", secret = "{SECRET}", private_key = "{PRIVATE_KEY}"',
            id="both",
        ),
        pytest.param(f'{URL}, secret = "{SECRET}"', id="v1-default"),
    ],
)
def test_usable_keys_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str], options: str) -> None:
    """Good keys for each signing pass the check silently."""
    assert check(tmp_path, options, capsys) == (True, "")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        pytest.param(
            f'{URL}, signing = "v1a", private_key = "{PRIVATE_KEY[:-10]}"',
            "private_key: must ",
            id="cut-key",
        ),
        pytest.param(
            f'{URL}, signing = "v1a", private_key = "{PRIVATE_KEY.replace("whsk_", "whsec_")}"',
            "private_key: must start with 'whsk_'",
            id="wrong-prefix",
        ),
        pytest.param(
            f'{URL}, signing = "v1a"', 'private_key: required with signing = "v1a"', id="missing"
        ),
        pytest.param(
            f'{URL}, signing = "v1a", private_key = "{PRIVATE_KEY}", secret = "{SECRET}"',
            'secret: unused with signing = "v1a"',
            id="unused-secret",
        ),
        pytest.param(
            f'{URL}, signing = "v2", private_key = "{PRIVATE_KEY}"',
            "signing: must be",
            id="unknown-signing",
        ),
    ],
)
def test_bad_key_stops_start_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: str, problem: str
) -> None:
    """One line, `llmtune-receiver: routes: FILE: route 'forward': <option>: ...`, without the
    key."""
    usable, err = check(tmp_path, options, capsys)
    assert usable is False
    [line] = err.splitlines()
    where = tmp_path / "routes.toml"
    assert line.startswith(f"llmtune-receiver: routes: {where}: route 'forward': {problem}")
    encoded = PRIVATE_KEY.removeprefix("whsk_")
    for piece in (encoded[:12], encoded[12:24], SECRET.removeprefix("whsec_")[:12]):
        assert piece not in line
