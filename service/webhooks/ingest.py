"""`POST /webhooks/llmtune`: size cap → verify → parse and normalize → store → answer.

Each step is a named function and raises an `ApiError`; the answer is 2xx only after the ingest
writer has committed. Nothing here calls a handler: fan-out runs later from the outbox.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from service.errors import ApiError, InvalidBody, PayloadTooLarge, SignatureRejected
from service.ids import new_id
from service.jsonresponse import JSONResponse
from service.services import Services, services
from service.store.events import NewEvent
from service.store.ingest import IngestResult
from service.webhooks.normalize import BodyError, Event, metric_label, normalize, parse_body
from service.webhooks.verify import SigningKey, VerificationError, verify

log = structlog.get_logger(__name__)

_UNSIGNED_OK = ("no_secret_configured", "missing_signature", "body_signature_unsupported")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) anything over `limit` bytes before or while reading it."""
    declared = request.headers.get("content-length")
    # isascii: str.isdigit() also accepts digits like "²" that int() refuses.
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body exceeds {limit} bytes", details={"limit": limit})
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body exceeds {limit} bytes", details={"limit": limit})
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidBody("the client disconnected before the body was complete") from None
    return b"".join(chunks)


def authenticate(
    keys: Sequence[SigningKey], headers: list[tuple[str, str]], body: bytes, *, allow_unsigned: bool
) -> bool:
    """True when signed by a configured secret; False for an unsigned body allowed in dev mode."""
    try:
        verify(keys, headers, body)
    except VerificationError as exc:
        if allow_unsigned and exc.reason in _UNSIGNED_OK:
            return False
        log.warning(
            "webhook_rejected",
            reason=exc.reason,
            body_bytes=len(body),
            body_sha256=hashlib.sha256(body).hexdigest()[:16],
        )
        raise SignatureRejected(
            "signature missing" if exc.missing else "signature does not match",
            reason=exc.reason,
            missing=exc.missing,
        ) from None
    return True


def to_event(body: bytes) -> Event:
    """Parse and normalize a verified body (400 when it is not a JSON object we accept)."""
    try:
        return normalize(parse_body(body), body)
    except BodyError as exc:
        raise InvalidBody(str(exc), details={"reason": exc.reason}) from None


def _warn_on_header_mismatch(headers: list[tuple[str, str]], event: Event) -> None:
    # X-Webhook-Event is not signed: the body decides, but a mismatch is worth a line.
    for name, value in headers:
        if name.lower() == "x-webhook-event" and value != event.type:
            log.info("event_header_mismatch", body_type=event.type)


def _outcome(exc: ApiError) -> str:
    return {401: "rejected_signature", 413: "too_large", 503: "unavailable"}.get(
        exc.status, "invalid_body"
    )


async def receive_webhook(request: Request) -> Response:
    """Verify, normalize and durably store one LLMTune delivery, then acknowledge it."""
    svc = services(request)
    started = time.perf_counter()
    label, outcome = "unparsed", "error"
    try:
        body = await read_body(request, svc.settings.max_body_bytes)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        verified = authenticate(
            svc.signing_keys, headers, body, allow_unsigned=svc.settings.webhook_allow_unsigned
        )
        event = to_event(body)
        label = metric_label(event.type)
        result = await _store(svc, event, body, headers, verified=verified, label=label)
        outcome = "duplicate" if result.duplicate else "stored"
    except ApiError as exc:
        outcome = _outcome(exc)
        if isinstance(exc, SignatureRejected):
            svc.metrics.signature_failures.labels(exc.reason).inc()
        raise
    finally:
        svc.metrics.received.labels(label, outcome).inc()
        svc.metrics.ingest_seconds.observe(time.perf_counter() - started)
    if result.duplicate:
        svc.metrics.duplicates.labels(label).inc()
    return JSONResponse(
        {"received": True, "eventId": result.event_id, "duplicate": result.duplicate}
    )


async def _store(
    svc: Services,
    event: Event,
    body: bytes,
    headers: list[tuple[str, str]],
    *,
    verified: bool,
    label: str,
) -> IngestResult:
    _warn_on_header_mismatch(headers, event)
    new = NewEvent(
        id=new_id("evt"),
        source="webhook",
        event=event,
        raw_body=body,
        headers=[[name, value.replace("\x00", "")] for name, value in headers],
        verified=verified,
        received_at=svc.clock.now(),
    )
    result = await svc.writer.write(new)
    structlog.contextvars.bind_contextvars(event_id=result.event_id, job_id=event.job_id)
    log.info(
        "webhook_stored",
        event_type=label,
        duplicate=result.duplicate,
        verified=verified,
        body_bytes=len(body),
    )
    return result
