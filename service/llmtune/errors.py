"""The errors the LLMTune client raises, one class per kind of failure, and the pure reading of
LLMTune's error answers.

LLMTune documents two error shapes (contract §2.6): nested `{"error": {"message", "code",
"details"}}` and flat `{"error": "...", "message": "..."}`; proxies in between answer with plain
text or HTML. `parse_error_body` reads all of them and never raises: a failure must not turn into
a different failure while it is being described. Nothing here may carry the API key.

    LLMTuneError
    ├── BadRequest          400 (and requests refused before sending)
    ├── Unauthorized        401
    ├── PaymentRequired     402: out of credits, permanent until someone pays
    ├── NotFound            404
    ├── RateLimited         429 (retryable; `retry_after` from Retry-After)
    ├── ServerError         5xx (retryable)
    ├── Unreachable         no answer: refused, reset, timed out (retryable; status None)
    └── UnexpectedAnswer    2xx we cannot read, or a status LLMTune does not document
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import orjson

MAX_MESSAGE = 500  # characters of an error message; an HTML error page can be megabytes
_CODE_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")

ErrorParts = tuple[str, str, dict[str, Any] | None]  # (message, code, details)


class LLMTuneError(Exception):
    """A request to LLMTune failed; `code` is a short slug, `message` is for people."""

    default_code: ClassVar[str] = "LLMTUNE_ERROR"
    _retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code or self.default_code
        self.message = message
        self.details = details
        self.retry_after = retry_after
        super().__init__(self.message)

    @property
    def retryable(self) -> bool:
        """True when trying again later may succeed (429, 5xx, no answer at all)."""
        return self._retryable

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.message}"


class BadRequest(LLMTuneError):
    """400: LLMTune (or this client, before sending) refused the request as malformed."""

    default_code = "BAD_REQUEST"


class Unauthorized(LLMTuneError):
    """401: the API key is missing, wrong or revoked."""

    default_code = "UNAUTHORIZED"


class PaymentRequired(LLMTuneError):
    """402: the workspace has no credits left; retrying cannot help."""

    default_code = "PAYMENT_REQUIRED"


class NotFound(LLMTuneError):
    """404: no such model or job."""

    default_code = "NOT_FOUND"


class RateLimited(LLMTuneError):
    """429: too many requests; `retry_after` says when to come back, if LLMTune said."""

    default_code = "RATE_LIMITED"
    _retryable = True


class ServerError(LLMTuneError):
    """5xx: LLMTune failed; worth trying again with backoff."""

    default_code = "SERVER_ERROR"
    _retryable = True


class Unreachable(LLMTuneError):
    """No answer: connection refused or reset, or a timeout."""

    default_code = "UNREACHABLE"
    _retryable = True


class UnexpectedAnswer(LLMTuneError):
    """An answer we cannot use: unreadable 2xx bodies, undocumented statuses."""

    default_code = "UNEXPECTED_ANSWER"


_BY_STATUS: dict[int, type[LLMTuneError]] = {
    400: BadRequest,
    401: Unauthorized,
    402: PaymentRequired,
    404: NotFound,
    429: RateLimited,
}


def error_class(status: int) -> type[LLMTuneError]:
    """The error type for a non-2xx HTTP status."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, UnexpectedAnswer)


def parse_error_body(body: bytes | str) -> ErrorParts:
    """(message, code, details) from an error answer in any shape; "" where absent."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _cut(text), "", None
    if not isinstance(document, dict):
        return _cut(text), "", None
    error = document.get("error")
    if isinstance(error, dict):
        return _from_fields(error, outer=document)
    return _from_flat(error, document)


def _from_fields(fields: dict[str, Any], *, outer: dict[str, Any]) -> ErrorParts:
    """The nested shape: `error.message`, `error.code` (or `error.type`), `error.details`."""
    message = _text(fields.get("message")) or _text(outer.get("message"))
    code = _code(fields.get("code")) or _code(fields.get("type")) or _code(outer.get("code"))
    details = fields["details"] if "details" in fields else outer.get("details")
    return message, code, _details(details)


def _from_flat(error: object, document: dict[str, Any]) -> ErrorParts:
    """The flat shapes: `{"error": "msg"}`, `{"message": ...}`, or both at once."""
    message = _text(document.get("message"))
    code = _code(document.get("code"))
    error_text = _text(error)
    if not message:
        message = error_text
    elif not code and _CODE_LIKE.fullmatch(error_text):
        # Beside a message, a one-word `error` ("invalid_dataset") names the kind of error;
        # a phrase ("Bad Request") only repeats the status and is dropped.
        code = error_text
    return message, code, _details(document.get("details"))


def _text(value: object) -> str:
    """A message-ish JSON value as one line of text (lists are joined: NestJS sends lists)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return _cut("; ".join(value))
    return _cut(orjson.dumps(value).decode())


def _code(value: object) -> str:
    return value.strip()[:64] if isinstance(value, str) else ""


def _details(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    return {"value": value}  # a list or a scalar: kept, under a name


def _cut(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"
