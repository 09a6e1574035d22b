"""`handlers.base.validated`: a handler's options read by its pydantic model, every problem an
`OptionsError` naming the option, and never the value sent (options hold secrets)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import Field

from service.handlers.base import Options, OptionsError, validated
from service.handlers.email import parse_options as email_options
from service.handlers.http import HttpOptions
from service.handlers.slack import SlackOptions
from service.handlers.slack import parse_options as slack_options

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


WEBHOOK = "https://hooks.slack.com/services/T000/B000/SECRETPART"
PASSWORD = "hunter2-SMTP-secret"
MAIL: dict[str, Any] = {
    "host": "smtp.example.com",
    "from": "a@example.com",
    "to": ["b@example.com"],
}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"webhook_url": WEBHOOK, "colour": WEBHOOK}, "colour: unknown option", id="unknown"
        ),
        pytest.param(
            {"webhook_url": [WEBHOOK]}, "webhook_url: must be a non-empty string", id="list"
        ),
        pytest.param({"webhook_url": " " + WEBHOOK}, "webhook_url: must not start", id="space"),
        pytest.param(
            {"webhook_url": "ftp" + WEBHOOK[5:]}, "webhook_url: must be an http", id="scheme"
        ),
        pytest.param(
            {"webhook_url": "https://[" + WEBHOOK[8:]}, "webhook_url: not a valid URL", id="bad"
        ),
        pytest.param(
            {"bot_token": WEBHOOK, "channel": 7}, "channel: must be a non-empty", id="chan"
        ),
        pytest.param({"channel": WEBHOOK}, "bot_token: required with channel", id="no-token"),
    ],
)
def test_slack_options_never_echo_the_webhook_url(options: dict[str, Any], message: str) -> None:
    """The `slack` handler's errors name the option, never the webhook URL (a secret)."""
    with pytest.raises(OptionsError) as caught:
        slack_options(options)
    assert str(caught.value).startswith(message)
    assert "SECRETPART" not in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"password": 123}, "password: must be a non-empty string", id="not-text"),
        pytest.param({"password": PASSWORD}, "user: required when password is set", id="alone"),
        pytest.param(
            {"user": PASSWORD, "password": ""}, "password: must be a non-empty", id="empty"
        ),
        pytest.param({"from": PASSWORD}, "from: not a valid address", id="as-from"),
        pytest.param({"to": [PASSWORD]}, "to: item 1: not a valid address", id="as-to"),
        pytest.param({"host": PASSWORD + "\n"}, "host: not a host name", id="as-host"),
        pytest.param({"port": PASSWORD}, "port: must be an integer from 1 to 65535", id="as-port"),
        pytest.param(
            {"timeout": PASSWORD}, "timeout: must be a number of seconds", id="as-timeout"
        ),
        pytest.param({PASSWORD: 1}, f"{PASSWORD}: unknown option", id="as-name"),
    ],
)
def test_email_options_never_echo_a_value(change: dict[str, Any], message: str) -> None:
    """The `email` handler's errors name the option and say what is wrong, never what was sent
    (a password given in the wrong place is still a password); an unknown name is quoted."""
    with pytest.raises(OptionsError) as caught:
        email_options(MAIL | change)
    assert str(caught.value).startswith(message)
    assert PASSWORD not in str(caught.value).removeprefix(f"{PASSWORD}: ")


def test_email_options_use_the_option_names() -> None:
    """`from` is read as the sender (not a Python name), and listed by that name when unknown."""
    found = email_options(MAIL | {"user": "u", "password": PASSWORD})
    assert (found.sender.addr_spec, found.password) == ("a@example.com", PASSWORD)
    assert PASSWORD not in repr(found)
    with pytest.raises(OptionsError, match=r"^sender: unknown option \(known: from, host,"):
        email_options(MAIL | {"sender": "a@example.com"})


@pytest.mark.parametrize(
    ("options", "secret"),
    [
        pytest.param({"webhook_url": WEBHOOK}, "SECRETPART", id="slack-webhook"),
        pytest.param(
            {"bot_token": "xoxb-SECRET", "channel": "C1"}, "xoxb-SECRET", id="slack-token"
        ),
        pytest.param({"url": "https://a.example", "secret": SECRET}, SECRET, id="http-secret"),
    ],
)
def test_secrets_stay_out_of_the_options_repr(options: dict[str, Any], secret: str) -> None:
    """A validated model's repr (a log line or a traceback may show it) leaves secrets out."""
    model = HttpOptions if "url" in options else SlackOptions
    assert secret not in repr(validated(model, options))
