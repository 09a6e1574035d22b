"""The parts of the OpenAPI document (`openapi.py`) not generated from `AdminRoute`s: the webhook
endpoints and the probes (described here by hand), and what every operation shares: the error
shape, the error responses, the security schemes and the tags."""

from __future__ import annotations

from typing import Any

from service.links import WEBHOOK_PATH
from service.webhooks.verify import SIGNATURE_HEADERS

# LLMTune's error envelope (`service.http.errors.error_body`).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "code", "details"],
            "properties": {
                "message": {"type": "string"},
                "code": {"type": "string", "description": "stable, e.g. `INVALID_PARAMETER`"},
                "details": {"type": ["object", "null"]},
            },
            "additionalProperties": False,
        }
    },
    "additionalProperties": False,
}
ERROR_CODES = {
    400: "a query parameter the operation does not declare, or a bad value or body "
    "(`INVALID_PARAMETER`, `details.parameter` names it)",
    401: "no admin Bearer token, or an unknown one (`UNAUTHORIZED`)",
    403: "the token may only read (`FORBIDDEN`)",
    429: "too many wrong tokens from this client address in the last minute "
    "(`TOO_MANY_ATTEMPTS`): retry after `Retry-After`; the right token is still accepted",
    503: "the store is unavailable (`STORAGE_UNAVAILABLE`): retry after `Retry-After`; or a "
    "stored value cannot be opened with the configured ENCRYPTION_KEYS "
    "(`ENCRYPTION_KEY_UNAVAILABLE`, `details.keyId` names the key)",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    429: {"Retry-After": {"schema": {"type": "string"}, "description": "seconds to wait"}},
    503: {"Retry-After": {"schema": {"type": "string"}, "description": "seconds to wait"}},
}
SIGNATURE_SCHEMES = {
    name: f"signature_{name.removeprefix('x-').replace('-', '_')}" for name in SIGNATURE_HEADERS
}
SECURITY_SCHEMES: dict[str, Any] = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`ADMIN_TOKENS` entry (`name:scope:TOKEN`); `read` scope may GET, "
        "`write` may also POST",
    },
    **{
        scheme: {
            "type": "apiKey",
            "in": "header",
            "name": header,
            "description": "hex HMAC-SHA256 of the raw body keyed with a webhook secret "
            "(`sha256=` prefix allowed)",
        }
        for header, scheme in SIGNATURE_SCHEMES.items()
    },
}
TAGS = {
    "webhooks": "What LLMTune sends: verified over the raw body, stored, then answered.",
    "probes": "Unauthenticated liveness, readiness and metrics.",
    "events": "Stored webhook events (admin).",
    "jobs": "Fine-tuning jobs submitted through this service (admin).",
    "deliveries": "Deliveries of events to routes, with their attempts (admin).",
    "test-event": "Synthetic test events through the whole pipeline (admin).",
    "rejections": "Refused webhook requests (admin).",
    "stream": "New events and delivery changes as server-sent events (admin).",
    "routes": "The configured routes, without their secrets (admin).",
    "openapi.json": "This document (admin).",
}
_SIGNED: list[dict[str, list[str]]] = [{scheme: []} for scheme in SIGNATURE_SCHEMES.values()]


def error_response(status: int, description: str) -> dict[str, Any]:
    """A response in the error shape, with the headers that status carries."""
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status in _HEADERS:
        out["headers"] = _HEADERS[status]
    return out


def _json(schema: dict[str, Any], description: str = "success") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_RECEIVED = {
    "type": "object",
    "required": ["received", "eventId", "duplicate"],
    "properties": {
        "received": {"const": True},
        "eventId": {"type": "string", "description": "the stored event (the first copy's)"},
        "duplicate": {"type": "boolean", "description": "true when already stored: deduplicated"},
    },
    "additionalProperties": False,
}
_DOORBELL = {
    "type": "object",
    "required": ["received", "stored", "poll"],
    "properties": {
        "received": {"const": True},
        "stored": {"const": False},
        "poll": {
            "enum": ["polling", "not_due", "jobs_disabled"],
            "description": "a poll of LLMTune started; none due (polled in the last 5 s, not "
            "yet accepted by LLMTune, or final); none possible (no LLMTUNE_API_KEY)",
        },
    },
    "additionalProperties": False,
}
_WEBHOOK_ERRORS = {
    400: "signed, but not a JSON object we accept (`INVALID_JSON`), or the sender gave up "
    "mid-body (`CLIENT_DISCONNECTED`)",
    401: "no signature (`MISSING_SIGNATURE`) or a wrong one (`INVALID_SIGNATURE`); nothing stored",
    404: "no such workspace or job callback (`NOT_FOUND`)",
    408: "the body did not arrive in time (`REQUEST_TIMEOUT`)",
    413: "the body is over the size cap (`PAYLOAD_TOO_LARGE`)",
    431: "the request headers are over MAX_HEADER_BYTES (`HEADERS_TOO_LARGE`); nothing stored",
    503: "cannot store now (`STORAGE_UNAVAILABLE`, `OVERLOADED`): retry after `Retry-After`",
}


def _webhook(
    operation_id: str, summary: str, *, path_params: tuple[str, ...] = (), unsigned: bool = False
) -> dict[str, Any]:
    description = (
        "Acknowledged (200) only once the event is committed. Signed with one of the webhook "
        "secrets over the exact bytes."
    )
    responses = {"200": _json(_RECEIVED, "stored (or a duplicate of a stored event)")}
    if unsigned:
        description += (
            " An unsigned delivery is only a doorbell (unless JOB_CALLBACKS_UNSIGNED=refuse, "
            "then 401): its body is not stored; the service asks LLMTune's API about the job "
            "(at most once every 5 s per job) and stores what the API answers (202)."
        )
        responses["202"] = _json(_DOORBELL, "unsigned: nothing stored; the job is polled")
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "tags": ["webhooks"],
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in path_params
        ],
        "requestBody": {
            "required": True,
            "description": "an LLMTune webhook body (W1, W2 or W3): a JSON object",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "responses": {
            **responses,
            **{str(code): error_response(code, why) for code, why in _WEBHOOK_ERRORS.items()},
        },
        "security": [*_SIGNED, {}] if unsigned else _SIGNED,
    }


def _probe(operation_id: str, summary: str, ok: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["probes"],
        "responses": {"200": ok},
        "security": [],
    }


_READY = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"const": "ready"},
        "schema": {"const": "newer", "description": "a newer release has migrated ahead"},
    },
    "additionalProperties": False,
}


def public_paths() -> dict[str, dict[str, Any]]:
    """The webhook endpoints and the probes, as OpenAPI path items (a fresh dict each call)."""
    main = "Receive one LLMTune delivery (the default workspace)."
    named = "Receive one LLMTune delivery for a workspace of the routes file."
    readyz = _probe(
        "get_readyz",
        "The store answers within 2 s and is at this code's migration head (or newer).",
        _json(_READY),
    )
    readyz["responses"]["503"] = error_response(
        503,
        "not ready (`STORAGE_UNAVAILABLE`): `details.reason` is `database_unreachable` or "
        "`migrations_pending`",
    )
    text = {
        "description": "Prometheus text exposition",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    health = {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}
    return {
        WEBHOOK_PATH: {"post": _webhook("post_webhook", main)},
        WEBHOOK_PATH + "/": {"post": _webhook("post_webhook_slash", main + " Same as without /.")},
        WEBHOOK_PATH + "/{workspace}": {
            "post": _webhook("post_workspace_webhook", named, path_params=("workspace",))
        },
        WEBHOOK_PATH + "/{workspace}/": {
            "post": _webhook(
                "post_workspace_webhook_slash",
                named + " Same as without /.",
                path_params=("workspace",),
            )
        },
        WEBHOOK_PATH + "/jobs/{token}": {
            "post": _webhook(
                "post_job_callback",
                "Receive a delivery at one job's own callback URL (its `webhookUrl`).",
                path_params=("token",),
                unsigned=True,
            )
        },
        "/healthz": {
            "get": _probe(
                "get_healthz",
                "The process is alive.",
                _json(health | {"additionalProperties": False}),
            )
        },
        "/readyz": {"get": readyz},
        "/metrics": {"get": _probe("get_metrics", "Prometheus metrics of this process.", text)},
    }
