"""`handlers.base.validated`: a handler's options read by its pydantic model, every problem an
`OptionsError` naming the option, and never the value sent (options hold secrets)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import Field

from service.handlers.base import Options, OptionsError, validated
from service.handlers.http import HttpOptions

SECRET = "whsec_c2VjcmV0LXZhbHVlLTAxMjM0NTY3ODk"


class Sample(Options):
    must: ClassVar[dict[str, str]] = {
        "size": "must be a whole number",
        "size.range": "must be from 1 to 10",
        "token": "must be a string",
    }
    token: str
    size: int = Field(1, ge=1, le=10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"token": SECRET, "colour": SECRET}, "colour: unknown option", id="unknown"),
        pytest.param({}, "token: required", id="missing"),
        pytest.param({"token": 12345}, "token: must be a string", id="wrong-type"),
        pytest.param(
            {"token": SECRET, "size": "3"}, "size: must be a whole number", id="no-coerce"
        ),
        pytest.param({"token": SECRET, "size": True}, "size: must be a whole number", id="bool"),
        pytest.param({"token": SECRET, "size": 11}, "size: must be from 1 to 10", id="range"),
    ],
)
def test_problems_name_the_option(options: dict[str, Any], message: str) -> None:
    """Each problem is one `OptionsError` that starts with the option's name."""
    with pytest.raises(OptionsError) as caught:
        validated(Sample, options)
    assert str(caught.value).startswith(message)
    assert SECRET not in str(caught.value)
    assert "12345" not in str(caught.value)


def test_good_options_are_read() -> None:
    """Valid options come back typed, defaults filled in."""
    assert validated(Sample, {"token": "t"}) == Sample(token="t", size=1)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"url": 1, "secret": SECRET}, id="bad-url-beside-a-secret"),
        pytest.param({"url": "https://a.example", "secret": [SECRET]}, id="secret-in-a-list"),
        pytest.param({"url": "https://a.example", "signing": SECRET}, id="secret-as-signing"),
        pytest.param({"url": "https://a.example", "timeout": SECRET}, id="secret-as-timeout"),
    ],
)
def test_http_options_never_echo_a_value(options: dict[str, Any]) -> None:
    """The `http` handler's errors say what is wrong without repeating what was sent."""
    with pytest.raises(OptionsError) as caught:
        validated(HttpOptions, options)
    assert SECRET not in str(caught.value)
