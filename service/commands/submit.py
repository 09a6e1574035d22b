"""`submit`: submit a fine-tune through a running service's admin API (`POST /admin/jobs`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx
import orjson

from service.admin_tokens import parse_admin_tokens
from service.commands.basics import settings_or_exit


def job_request(args: argparse.Namespace) -> dict[str, Any]:
    """The `POST /admin/jobs` body for the command's options."""
    hyperparameters = {
        name: value
        for name, value in (
            ("learningRate", args.learning_rate),
            ("epochs", args.epochs),
            ("batchSize", args.batch_size),
        )
        if value is not None
    }
    body: dict[str, Any] = {
        "baseModel": args.base_model,
        "dataset": args.dataset,
        "trainingMethod": args.training_method,
        "hyperparameters": hyperparameters,
    }
    if args.idempotency_key:
        body["idempotencyKey"] = args.idempotency_key
    return body


def admin_token(given: str | None) -> str | None:
    """The token to call the admin API with: the option, else the first write token of
    ADMIN_TOKENS (its secret part, not the `name:scope:` prefix)."""
    if given:
        return given
    configured = settings_or_exit().admin_tokens
    tokens = parse_admin_tokens([token.get_secret_value() for token in configured])
    writers = [token for token in tokens if token.can_write]
    return writers[0].secret.decode() if writers else None


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a job; print it (JSON); exit 0 when the service answered 200 or 201."""
    token = admin_token(args.token)
    if token is None:
        print("llmtune-receiver: give --token (no ADMIN_TOKENS configured)", file=sys.stderr)
        return 2
    url = args.url.rstrip("/") + "/admin/jobs"
    try:
        response = httpx.post(
            url,
            json=job_request(args),
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        print(f"llmtune-receiver: could not reach {url}: {exc}", file=sys.stderr)
        return 1
    try:
        shown = orjson.dumps(response.json(), option=orjson.OPT_INDENT_2).decode()
    except ValueError:
        shown = response.text
    print(shown)
    return 0 if response.status_code in (200, 201) else 1
