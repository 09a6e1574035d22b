"""`submit`: submit a fine-tune through a running service's admin API (`POST /admin/jobs`).

Prints the job as `field: value` lines and the command that follows it, or with `--json` the
API's JSON as it answered. Errors as the other client commands: one line on stderr, exit 1.
"""

from __future__ import annotations

import argparse
from typing import Any

from service.commands import table
from service.commands.admin_client import call, json_body, read_token, run, terminal_width

SUBMIT_FIELDS: tuple[tuple[str, table.Kind], ...] = (
    *table.JOB_FIELDS[:8],
    ("idempotencyKey", "text"),
    *table.JOB_FIELDS[8:],
)


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


def submitted_lines(job: dict[str, Any], *, created: bool, width: int | None) -> list[str]:
    """The submitted job for people: what happened, its fields, and how to follow it."""
    job_id = table.cell(job.get("id"))
    head = (
        f"submitted job {job_id}"
        if created
        else f"job {job_id} was already submitted with this idempotency key (nothing new)"
    )
    follow = f"follow it: llmtune-receiver jobs show {job_id}"
    fields = table.render_fields(job, SUBMIT_FIELDS, width=width)
    return [table.clip(head, width), *fields, "", table.clip(follow, width)]


def _submit(args: argparse.Namespace) -> list[str]:
    token = read_token(args.token, write=True)
    response = call(args.url, token, "/admin/jobs", method="POST", body=job_request(args))
    if args.json:
        return [response.text]
    job = json_body(response)
    return submitted_lines(job, created=response.status_code == 201, width=terminal_width())


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a job; print it (text, or the API's JSON with `--json`); exit 0 when the service
    took it (201 new, 200 a known idempotency key)."""
    return run(args, _submit)
