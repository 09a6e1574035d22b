"""Errors the service answers with, and the one table that turns them into HTTP responses.

    ApiError(status, code)                      every error a client may see
    ├── InvalidBody            400 INVALID_JSON        signed, but not a JSON object we accept
    ├── InvalidParameter       400 INVALID_PARAMETER   a query parameter is malformed
    ├── SignatureRejected      401 MISSING_SIGNATURE | INVALID_SIGNATURE
    ├── Unauthorized           401 UNAUTHORIZED        admin API without a valid Bearer token
    ├── NotFound               404 NOT_FOUND
    ├── PayloadTooLarge        413 PAYLOAD_TOO_LARGE
    └── StorageUnavailable     503 STORAGE_UNAVAILABLE (with Retry-After) so LLMTune retries

Sender faults are 4xx, our own faults 5xx. Every body has LLMTune's shape:
`{"error": {"message": ..., "code": ..., "details": ...}}`.
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from service.jsonresponse import JSONResponse

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """Base of every error answered to a client."""

    status = 500
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def headers(self) -> dict[str, str]:
        """Extra response headers for this error."""
        return {}


class InvalidBody(ApiError):
    status, code = 400, "INVALID_JSON"


class InvalidParameter(ApiError):
    status, code = 400, "INVALID_PARAMETER"


class SignatureRejected(ApiError):
    status, code = 401, "INVALID_SIGNATURE"

    def __init__(self, message: str, *, reason: str, missing: bool) -> None:
        super().__init__(message, details={"reason": reason})
        self.reason = reason
        if missing:
            self.code = "MISSING_SIGNATURE"


class Unauthorized(ApiError):
    status, code = 401, "UNAUTHORIZED"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class NotFound(ApiError):
    status, code = 404, "NOT_FOUND"


class PayloadTooLarge(ApiError):
    status, code = 413, "PAYLOAD_TOO_LARGE"


class StorageUnavailable(ApiError):
    status, code = 503, "STORAGE_UNAVAILABLE"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """LLMTune's error envelope."""
    return {"error": {"message": message, "code": code, "details": details}}


async def handle_api_error(request: Request, exc: Exception) -> Response:
    """Answer an `ApiError` in LLMTune's shape."""
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details),
        status_code=exc.status,
        headers=exc.headers(),
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
    log.exception("unhandled_error", path=request.url.path)
    return JSONResponse(error_body("INTERNAL_ERROR", "internal error"), status_code=500)


EXCEPTION_HANDLERS = {
    ApiError: handle_api_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
