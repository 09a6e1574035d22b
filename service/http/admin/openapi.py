"""`GET /admin/openapi.json`: this service's HTTP API as an OpenAPI 3.1 document, generated.

Admin operations come from the app's `AdminRoute`s (`routes.operations()`): path, method,
summary, scope, query parameters (`params.Query` models), the request body's pydantic model and the
response's TypedDict, both turned into JSON Schema by pydantic. Each admin operation answers 400
(a parameter it does not declare, or a bad value), 401 (no or an unknown token), 429 (too many
wrong tokens from one address), 403 when it writes, 404 when its path names something, and 503
when the store is down; what a declaration cannot tell (more statuses, another media type, no
store) is in the small tables below, which a test keeps to existing operations. The webhook
endpoints and the probes are not `AdminRoute`s: `openapi_public` describes them by hand.

Served to admin tokens (read scope) like everything under `/admin/`, so the whole admin surface
has one rule for proxies and for readers; the document holds no secret. It is built once per set
of routes and kept as bytes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from importlib import metadata
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from service.http.admin.endpoint import AdminRoute, Operation
from service.http.admin.openapi_public import (
    ERROR_CODES,
    ERROR_SCHEMA,
    SECURITY_SCHEMES,
    TAGS,
    error_response,
    public_paths,
)
from service.http.admin.params import PAGING, Query
from service.services import Services

OPENAPI_PATH = "/admin/openapi.json"
REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")
_SENTENCE_END = re.compile(r"(?<=\.)\s+")

# What an `Operation` cannot say: more success statuses (same shape), and errors particular to one
# endpoint. Keys are (method, path) of existing operations (a test checks they all are).
ALSO_SUCCEEDS: dict[tuple[str, str], tuple[int, str]] = {
    ("POST", "/admin/jobs"): (200, "the job already submitted with this `idempotencyKey`"),
}
EXTRA_ERRORS: dict[tuple[str, str], dict[int, str]] = {
    ("POST", "/admin/jobs"): {
        402: "LLMTune refused the submission: payment required (its code kept)",
        404: "LLMTune does not know the base model or data set (its code kept)",
        502: "LLMTune answered wrongly, or refused our API key",
        503: "jobs are disabled (`JOBS_DISABLED`: no LLMTune API key), LLMTune is rate limiting"
        " or unreachable, or the store is unavailable",
    },
    ("POST", "/admin/jobs/{job_id}/refresh"): {
        409: "LLMTune has not accepted this job yet (`CONFLICT`)",
        502: "LLMTune answered wrongly",
        503: "jobs are disabled (`JOBS_DISABLED`), LLMTune is unreachable, or the store is down",
    },
    ("POST", "/admin/deliveries/{delivery_id}/retry"): {
        409: "the delivery succeeded: replay its event instead (`CONFLICT`)",
    },
}
# Answered without the store (so never 503), and media types other than JSON.
NO_STORE = frozenset({("GET", OPENAPI_PATH), ("GET", "/admin/routes")})
MEDIA_TYPES: dict[tuple[str, str], str] = {("GET", "/admin/stream"): "text/event-stream"}


def _version() -> str:
    try:
        return metadata.version("llmtune-receiver")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "0.0.0"


def _strict(schema: Any) -> Any:
    """A response shape's schema: no keys beyond the declared ones, no generated titles."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items() if key != "title"}
    if "properties" in schema:
        # Property names (`title` could be one) are kept as they are.
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        out.setdefault("additionalProperties", False)
    return out


class _Components:
    """`components.schemas`, filled as shapes and models are referred to."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}

    def ref(self, kind: type, *, strict: bool) -> dict[str, str]:
        """A `$ref` to `kind` (a TypedDict or a pydantic model), adding it and what it uses."""
        name = kind.__name__
        if name not in self.schemas:
            if issubclass(kind, BaseModel):
                schema = kind.model_json_schema(ref_template=REF)
            else:
                schema = TypeAdapter(kind).json_schema(ref_template=REF)
            for sub, body in schema.pop("$defs", {}).items():
                self.schemas.setdefault(sub, _strict(body) if strict else body)
            self.schemas[name] = _strict(schema) if strict else schema
        return {"$ref": REF.format(model=name)}


def query_parameters(model: type[Query]) -> list[dict[str, Any]]:
    """A query model's fields as OpenAPI parameters (repeatable ones as exploded arrays)."""
    out = []
    fields = model.model_json_schema().get("properties", {}).items()
    # Filters first, then paging.
    for name, schema in sorted(fields, key=lambda field: field[0] in PAGING):
        # Absent means "any": the `null` of an optional field is not a value one can send.
        options = [one for one in schema.get("anyOf", ()) if one != {"type": "null"}]
        value = {k: v for k, v in schema.items() if k not in ("anyOf", "title", "description")}
        if value.get("default") in (None, []):
            value.pop("default", None)
        param = {"name": name, "in": "query", "description": schema.get("description", "")}
        out.append(param | {"schema": (options[0] if len(options) == 1 else {}) | value})
    return out


def path_parameters(path: str) -> list[dict[str, Any]]:
    """The `{name}` segments of a path as required string parameters."""
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(path)
    ]


def _success(op: Operation, components: _Components) -> dict[str, Any]:
    media = MEDIA_TYPES.get((op.method, op.path), "application/json")
    if op.response is None:
        # Not a declared shape: an event stream's text, or this document itself.
        schema: dict[str, Any] = {"type": "string" if media != "application/json" else "object"}
    elif op.query.paged:
        schema = {
            "type": "object",
            "required": ["items", "nextCursor"],
            "properties": {
                "items": {"type": "array", "items": components.ref(op.response, strict=True)},
                "nextCursor": {"type": ["string", "null"]},
            },
            "additionalProperties": False,
        }
    else:
        schema = components.ref(op.response, strict=True)
    return {"content": {media: {"schema": schema}}}


def _errors(op: Operation) -> dict[int, str]:
    key = (op.method, op.path)
    errors = {400: ERROR_CODES[400], 401: ERROR_CODES[401], 429: ERROR_CODES[429]}
    if op.scope == "write":
        errors[403] = ERROR_CODES[403]
    names = [param["name"] for param in path_parameters(op.path)]
    if names:
        errors[404] = f"no such {names[-1].removesuffix('_id')} (`NOT_FOUND`)"
    if key not in NO_STORE:
        errors[503] = ERROR_CODES[503]
    return dict(sorted((errors | EXTRA_ERRORS.get(key, {})).items()))


def admin_operation(op: Operation, components: _Components) -> dict[str, Any]:
    """One admin `Operation` as an OpenAPI operation object."""
    success = _success(op, components)
    what = "created" if op.status == 201 else "OK"
    responses: dict[str, Any] = {str(op.status): {"description": what, **success}}
    if (op.method, op.path) in ALSO_SUCCEEDS:
        status, why = ALSO_SUCCEEDS[(op.method, op.path)]
        responses[str(status)] = {"description": why, **success}
    for status, why in _errors(op).items():
        responses[str(status)] = error_response(status, why)
    # The first sentence is the summary; the whole paragraph, when longer, the description.
    summary = _SENTENCE_END.split(op.summary, maxsplit=1)[0]
    out: dict[str, Any] = {
        "operationId": f"{op.method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', op.path)}".rstrip("_"),
        "summary": summary,
        "tags": [op.path.split("/")[2]],
        "parameters": path_parameters(op.path) + query_parameters(op.query),
        "responses": dict(sorted(responses.items())),
        "security": [{"adminToken": []}],
    }
    notes = [op.summary] if summary != op.summary else []
    if op.scope == "write":
        notes.append(
            "Needs a `write` token" + (f"; audited as `{op.action}`." if op.action else ".")
        )
    if notes:
        out["description"] = " ".join(notes)
    if op.body is not None:
        ref = components.ref(op.body, strict=False)
        # Required when the model has a required field: an empty body is refused then.
        required = bool(components.schemas[op.body.__name__].get("required"))
        out["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": ref}},
        }
    return out


def build_document(operations: Iterable[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these admin operations, the webhooks and the probes."""
    components = _Components()
    paths: dict[str, dict[str, Any]] = public_paths()
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = admin_operation(op, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "llmtune-receiver",
            "version": _version(),
            "description": "Receives LLMTune webhooks, stores them durably and fans them out; "
            "the admin API reads and acts on what is stored. Errors have LLMTune's shape: "
            '`{"error": {"message", "code", "details"}}`.',
        },
        "tags": [{"name": name, "description": TAGS.get(name, "")} for name in _tags(paths)],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "securitySchemes": SECURITY_SCHEMES,
        },
        "security": [{"adminToken": []}],
    }


def _tags(paths: dict[str, dict[str, Any]]) -> list[str]:
    used = {tag for item in paths.values() for op in item.values() for tag in op["tags"]}
    return [*(name for name in TAGS if name in used), *sorted(used - TAGS.keys())]


@functools.cache
def _rendered(operations: tuple[Operation, ...]) -> bytes:
    return orjson.dumps(build_document(operations))


def app_operations(routes: Iterable[BaseRoute]) -> tuple[Operation, ...]:
    """The `Operation` of every `AdminRoute` among an app's routes."""
    return tuple(route.operation for route in routes if isinstance(route, AdminRoute))


async def openapi_document(request: Request, svc: Services) -> Response:
    """This API as an OpenAPI 3.1 document (JSON), generated from the routes."""
    body = _rendered(app_operations(request.app.routes))
    return Response(body, media_type="application/json")
