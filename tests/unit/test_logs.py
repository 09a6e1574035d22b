"""Log processors and configuration: no frame locals in tracebacks, URLs in stdlib lines cut to
scheme and host, chatty client libraries held at WARNING."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest
import structlog

from service.logs import QUIET_LIBRARIES, configure_logging, redact_url_text, redact_urls

SLACK_URL = "https://hooks.slack.com/services/T0SECRET/B0SECRET/xoxSECRETPATH"
LOCAL_SECRET = "whsec_local-variable-marker"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            f'HTTP Request: POST {SLACK_URL} "HTTP/1.1 200 OK"',
            'HTTP Request: POST https://hooks.slack.com "HTTP/1.1 200 OK"',
            id="httpx-request-line",
        ),
        pytest.param(
            "postgresql+asyncpg://receiver:pa55word@db.internal:5432/receiver?ssl=require",
            "postgresql+asyncpg://db.internal:5432",
            id="userinfo-and-path",
        ),
        pytest.param("https://u:p@ss@host/x", "https://host", id="at-sign-in-password"),
        pytest.param("http://127.0.0.1:8000/a?token=t", "http://127.0.0.1:8000", id="query"),
        pytest.param("http://[::1]:80/a#frag", "http://[::1]:80", id="ipv6-and-fragment"),
        pytest.param(
            "see 'http://a.example/p?x=a@b' here", "see 'http://a.example' here", id="quoted"
        ),
        pytest.param("a http://x/1 and https://y/2", "a http://x and https://y", id="two-urls"),
        pytest.param("https://host", "https://host", id="already-bare"),
        pytest.param("no url: a/b c://", "no url: a/b c://", id="no-url"),
        pytest.param("", "", id="empty"),
    ],
)
def test_redact_url_text(text: str, expected: str) -> None:
    """Every URL keeps its scheme and host[:port]; userinfo, path, query and fragment go."""
    assert redact_url_text(text) == expected


def test_redact_urls_walks_nested_values() -> None:
    """The processor reaches strings inside lists and dicts (a dict traceback's messages)."""
    event = {
        "event": f"POST {SLACK_URL}",
        "exception": [{"exc_value": f"failed for url '{SLACK_URL}'", "frames": [{"lineno": 3}]}],
        "count": 2,
    }
    redacted = redact_urls(None, "info", event)
    assert "SECRET" not in repr(redacted)
    assert redacted["count"] == 2
    assert redacted["exception"][0]["frames"] == [{"lineno": 3}]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Leave structlog and the stdlib loggers as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def _fail_with_a_secret_local() -> None:
    secret = LOCAL_SECRET  # noqa: F841 - the local variable a traceback must not show
    raise RuntimeError("boom")


def json_lines(text: str) -> list[dict[str, object]]:
    """The JSON log lines in `text`."""
    return [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_carry_no_locals(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    """Ours and stdlib lines with a traceback name the error and its frames, never a local."""
    configure_logging("info", fmt, cache=False)
    try:
        _fail_with_a_secret_local()
    except RuntimeError:
        structlog.get_logger("test").exception("unhandled_error")
        logging.getLogger("some.library").exception("library failure")
    err = capsys.readouterr().err
    assert "RuntimeError" in err
    assert "_fail_with_a_secret_local" in err
    assert err.count("boom") >= 2
    assert LOCAL_SECRET not in err


@pytest.mark.usefixtures("restore_logging")
def test_stdlib_lines_have_urls_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """A library line that names a credential-bearing URL keeps only its host."""
    configure_logging("info", "json", cache=False)
    logging.getLogger("some.library").warning("POST %s failed", SLACK_URL)
    [line] = json_lines(capsys.readouterr().err)
    assert line["event"] == "POST https://hooks.slack.com failed"


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("name", ["httpx", "httpcore", "hpack", "aiosqlite", "asyncpg"])
def test_client_libraries_are_held_at_warning(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """Even at LOG_LEVEL=debug, their info lines (full URLs) are not written."""
    configure_logging("debug", "json", cache=False)
    logging.getLogger(name).info("HTTP Request: POST %s", SLACK_URL)
    logging.getLogger(name).warning("still shown")
    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["still shown"]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_exception_messages_have_urls_redacted(
    capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """An exception that quotes a URL (httpx's HTTPStatusError does) keeps only its host, in
    our lines and stdlib ones."""
    configure_logging("info", fmt, cache=False)
    try:
        raise RuntimeError(f"Client error '404 Not Found' for url '{SLACK_URL}'")
    except RuntimeError:
        structlog.get_logger("test").exception("delivery_failed")
        logging.getLogger("some.library").exception("library failure")
    err = capsys.readouterr().err
    assert err.count("for url 'https://hooks.slack.com'") == 2
    assert "SECRET" not in err
