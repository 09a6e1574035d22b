"""Errors the service answers with, and the one table that turns them into HTTP responses.

    ApiError(status, code)                      every error a client may see
    ├── InvalidParameter       400 INVALID_PARAMETER   a query parameter is malformed
    ├── ClientDisconnected     400 CLIENT_DISCONNECTED the sender gave up mid-body
    ├── Unauthorized           401 UNAUTHORIZED        admin API without a valid Bearer token
    ├── Forbidden              403 FORBIDDEN           a read-only admin token on a mutating call
    ├── NotFound               404 NOT_FOUND
    ├── Conflict               409 CONFLICT            the resource is not in a state for that
    ├── TooManyAttempts        429 TOO_MANY_ATTEMPTS   too many failed admin authentications
    ├── BodyTimeout            408 REQUEST_TIMEOUT     the body did not arrive within the deadline
    ├── PayloadTooLarge        413 PAYLOAD_TOO_LARGE
    ├── HeadersTooLarge        431 HEADERS_TOO_LARGE   request headers over MAX_HEADER_BYTES
    ├── JobsUnavailable        503 JOBS_DISABLED       no LLMTune API key (`http/admin/jobs.py`)
    └── UpstreamFailed         400 402 404 502 503     LLMTune refused or failed a submission,
                               with LLMTune's code     (`http/admin/jobs.py`)

    Domain errors raised below the HTTP layer, mapped here and nowhere else:
    BodyError          → 400 INVALID_JSON
    VerificationError  → 401 MISSING_SIGNATURE | INVALID_SIGNATURE
    StoreUnavailable   → 503 STORAGE_UNAVAILABLE (with Retry-After) so LLMTune retries
    └── Overloaded     → 503 OVERLOADED (Retry-After: 1) the write queue is full
    SealedDataUnreadable → 503 ENCRYPTION_KEY_UNAVAILABLE  stored data under a key not configured
    HTTPException      → 404 NOT_FOUND | 405 METHOD_NOT_ALLOWED  Starlette's unknown path or method
    Exception          → 500 INTERNAL_ERROR  a bug: logged, the traceback never answered

Sender faults are 4xx, our own faults 5xx. Every body has LLMTune's shape:
`{"error": {"message": ..., "code": ..., "details": ...}}`.
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from service.http.responses import JSONResponse
from service.http.route_template import loggable_path
from service.store.db import SchemaNotMigrated, StoreUnavailable
from service.store.errors import SealedDataUnreadable
from service.store.writer import Overloaded
from service.webhooks.normalize import BodyError
from service.webhooks.verify import VerificationError

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 5
# A full write queue drains in well under a second; the sender should come back soon.
OVERLOADED_RETRY_AFTER_SECONDS = 1


class ApiError(Exception):
    """Base of every HTTP-level error answered to a client."""

    status = 500
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def headers(self) -> dict[str, str]:
        """Extra response headers for this error."""
        return {}


class InvalidParameter(ApiError):
    status, code = 400, "INVALID_PARAMETER"


class ClientDisconnected(ApiError):
    status, code = 400, "CLIENT_DISCONNECTED"


class Unauthorized(ApiError):
    status, code = 401, "UNAUTHORIZED"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    status, code = 403, "FORBIDDEN"


class NotFound(ApiError):
    status, code = 404, "NOT_FOUND"


class Conflict(ApiError):
    status, code = 409, "CONFLICT"


class TooManyAttempts(ApiError):
    status, code = 429, "TOO_MANY_ATTEMPTS"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retryAfterSeconds": retry_after})
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class BodyTimeout(ApiError):
    status, code = 408, "REQUEST_TIMEOUT"

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


class PayloadTooLarge(ApiError):
    status, code = 413, "PAYLOAD_TOO_LARGE"


class HeadersTooLarge(ApiError):
    status, code = 431, "HEADERS_TOO_LARGE"

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """LLMTune's error envelope."""
    return {"error": {"message": message, "code": code, "details": details}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error answer in LLMTune's shape."""
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def storage_unavailable(message: str, details: dict[str, Any] | None = None) -> Response:
    """503 with Retry-After: the one way the service says "cannot store now, retry"."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return error_response(503, "STORAGE_UNAVAILABLE", message, details, headers)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    """Answer an `ApiError` in LLMTune's shape."""
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers())


async def handle_verification_error(request: Request, exc: Exception) -> Response:
    """401: the delivery is not proven to come from LLMTune."""
    assert isinstance(exc, VerificationError)  # noqa: S101 - registered for it only
    if exc.missing:
        return error_response(401, "MISSING_SIGNATURE", "signature missing", {"reason": exc.reason})
    message = {
        "malformed_signature": "signature is malformed (expected 64 hex digits, optional sha256=)",
        "no_secret_configured": "no webhook secret is configured",
    }.get(exc.reason, "signature does not match")
    return error_response(401, "INVALID_SIGNATURE", message, {"reason": exc.reason})


async def handle_body_error(request: Request, exc: Exception) -> Response:
    """400: signed, but not a JSON object we accept."""
    assert isinstance(exc, BodyError)  # noqa: S101 - registered for it only
    return error_response(400, "INVALID_JSON", str(exc), {"reason": exc.reason})


async def handle_store_unavailable(request: Request, exc: Exception) -> Response:
    """503 so the sender retries; dedup absorbs the repeat."""
    if isinstance(exc, SchemaNotMigrated):
        return storage_unavailable(
            "the database is not migrated: run `llmtune-receiver migrate`",
            {"reason": "migrations_pending", "error": str(exc)},
        )
    return storage_unavailable("the event store is unavailable; retry later")


async def handle_overloaded(request: Request, exc: Exception) -> Response:
    """503 at once when more deliveries wait to be stored than the queue holds."""
    headers = {"Retry-After": str(OVERLOADED_RETRY_AFTER_SECONDS)}
    return error_response(503, "OVERLOADED", "too many deliveries waiting; retry", None, headers)


async def handle_sealed_unreadable(request: Request, exc: Exception) -> Response:
    """503, never garbage: the row is sealed under a key this process was not given."""
    assert isinstance(exc, SealedDataUnreadable)  # noqa: S101 - registered for it only
    log.error("sealed_data_unreadable", path=loggable_path(request.scope), key_id=exc.key_id)
    return error_response(
        503,
        "ENCRYPTION_KEY_UNAVAILABLE",
        "stored data cannot be opened with the configured ENCRYPTION_KEYS",
        {"keyId": exc.key_id},
    )


_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown path or method) in the same shape."""
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Last resort: log the bug, answer in our shape, never leak the traceback."""
    # The logged traceback has no frame locals (`service.logs`): they hold headers and options.
    log.exception("unhandled_error", path=loggable_path(request.scope))
    return JSONResponse(error_body("INTERNAL_ERROR", "internal error"), status_code=500)


EXCEPTION_HANDLERS = {
    ApiError: handle_api_error,
    VerificationError: handle_verification_error,
    BodyError: handle_body_error,
    StoreUnavailable: handle_store_unavailable,
    Overloaded: handle_overloaded,
    SealedDataUnreadable: handle_sealed_unreadable,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
