"""structlog configuration, and the canonical log line: one line per request or ingest.

JSON off a TTY, a readable console on one; stdlib and uvicorn logs go through the same formatter.
This is the one piece of process-global state the service has. Nothing here may log a secret,
a signature or a whole body: callers log sizes and hashes. Tracebacks carry no local variables
(a frame's locals hold request headers and route options), stdlib lines have their URLs cut to
scheme and host, and chatty client libraries are held at WARNING: their info lines print URLs.

Canonical line: the HTTP edge opens a `canonical_line()` per request and writes it once at the
end; code below it (the ingest service) `annotate`s that line with what it learned instead of
writing lines of its own. Outside a request (a poll, an internal event) `annotate` returns False
and the caller writes its own line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson
import structlog

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
# Libraries whose info/debug lines name full URLs (a Slack webhook URL is a credential) or
# connection strings; held at WARNING whatever LOG_LEVEL says.
QUIET_LIBRARIES = (
    "httpx",
    "httpcore",
    "hpack",
    "h11",
    "h2",
    "urllib3",
    "aiosqlite",
    "asyncpg",
    "aiosmtplib",
    "uvicorn.access",
)
# scheme://[userinfo@]host[:port] then anything up to whitespace or a quote: path, query and
# userinfo can all hold credentials (Slack's /services/T/B/X, ?token=, user:password@).
_URL = re.compile(
    r"\b([a-zA-Z][a-zA-Z0-9+.-]{0,15})://"  # scheme
    r"(?:[^\s/?#'\"<>]*@)?"  # userinfo, up to its last @ (an unescaped @ in a password)
    r"([^\s/?#'\"<>@]*)"  # host[:port]
    r"[^\s'\"<>]*"  # path, query, fragment
)


@dataclass(slots=True)
class CanonicalLine:
    """Fields gathered for the one line a request writes, and the level it deserves."""

    fields: dict[str, Any] = field(default_factory=dict)
    level: str = "info"

    def raise_level(self, level: str) -> None:
        """Keep the most severe level asked for."""
        if LEVELS[level] > LEVELS[self.level]:
            self.level = level


_current: ContextVar[CanonicalLine | None] = ContextVar("canonical_line", default=None)


@contextmanager
def canonical_line() -> Iterator[CanonicalLine]:
    """Collect annotations for one request's line (the caller writes it)."""
    line = CanonicalLine()
    token = _current.set(line)
    try:
        yield line
    finally:
        _current.reset(token)


def annotate(level: str = "info", **fields: Any) -> bool:
    """Add `fields` to the current canonical line; False when there is none."""
    line = _current.get()
    if line is None:
        return False
    line.fields.update(fields)
    line.raise_level(level)
    return True


def redact_url_text(text: str) -> str:
    """`text` with every URL cut to scheme://host[:port] (no userinfo, path or query)."""
    if "://" not in text:  # the common case, without running the pattern
        return text
    return _URL.sub(r"\1://\2", text)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url_text(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


def redact_urls(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: cut every URL in every string value (tracebacks too) to its host."""
    return {key: _redacted(value) for key, value in event_dict.items()}


def redact_exception_urls(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: `redact_urls` for a rendered traceback only. Our own fields name no
    credential-bearing URL, and walking every field of every line would cost time, but an
    exception's message may quote one (httpx's HTTPStatusError does)."""
    exception = event_dict.get("exception")
    if exception is not None:
        event_dict["exception"] = _redacted(exception)
    return event_dict


# Frame locals hold the request (its Authorization header) and route options (secrets).
dict_tracebacks_without_locals = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def _orjson_dumps(value: Any, **_: Any) -> str:
    # orjson is several times faster than the stdlib for the one JSON object each line is.
    return orjson.dumps(value, default=repr).decode("utf-8")


def uses_console(fmt: str) -> bool:
    """True when LOG_FORMAT `fmt` renders for a person (console) rather than as JSON lines."""
    return fmt == "console" or (fmt == "auto" and sys.stderr.isatty())


def _renderer(fmt: str) -> Any:
    use_console = uses_console(fmt)
    if use_console:
        # plain_traceback: the rich formatter would print local variables, secrets included.
        return structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    return structlog.processors.JSONRenderer(serializer=_orjson_dumps)


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's plain line writer, carrying the logger's name for `add_logger_name`."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


def _write_logger(*args: Any) -> _NamedWriteLogger:
    return _NamedWriteLogger(sys.stderr, str(args[0]) if args else "")


def configure_logging(level: str = "info", fmt: str = "auto", *, cache: bool = True) -> None:
    """Our own lines go straight from structlog to stderr; stdlib lines (uvicorn, alembic,
    SQLAlchemy) go through the same renderer via `ProcessorFormatter`. Both at `level`.

    The direct path is about twice as fast per line as routing ours through stdlib logging.
    `cache=False` is for tests: cached loggers would not see `structlog.testing.capture_logs`.
    """
    renderer = _renderer(fmt)
    console = isinstance(renderer, structlog.dev.ConsoleRenderer)
    # Tracebacks are rendered before the renderer (as text on a console), so that the URL
    # redaction sees them; the console renderer then prints that text as it is.
    tracebacks: list[Any] = (
        [structlog.processors.format_exc_info] if console else [dict_tracebacks_without_locals]
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
            *tracebacks,
            redact_exception_urls,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=_write_logger,
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tracebacks,
                redact_urls,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # uvicorn.access is among them: our middleware writes one line per request already.
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
