"""`jobs refresh`, `deliveries retry` and `deliveries retry-dead`: the admin API's actions from
the command line, through a running service (so a worker there delivers what is made due).

Each prints what the service answered as text, or with `--json` the API's JSON as it is. They
change something, so the token defaults to the first write token of ADMIN_TOKENS. Errors as the
other client commands: one line on stderr, exit 1; bad arguments exit 2.
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from service.commands import table
from service.commands.admin_api import RETRY_FILTERS
from service.commands.admin_client import call, json_body, read_token, run, terminal_width


def _post(args: argparse.Namespace, path: str, params: dict[str, str] | None = None) -> Any:
    """POST `path`; the API's JSON text (`--json`) or its decoded document."""
    token = read_token(args.token, write=True)
    response = call(args.url, token, path, method="POST", params=params)
    return response.text if args.json else json_body(response)


def _refresh(args: argparse.Namespace) -> list[str]:
    answer = _post(args, f"/admin/jobs/{quote(args.id, safe='')}/refresh")
    if args.json:
        return [answer]
    width = terminal_width()
    head = f"asked LLMTune about job {table.cell(answer.get('id'))}; it is {answer.get('status')}"
    return [table.clip(head, width), "", *table.job_detail(answer, width=width)]


def retried_lines(delivery: dict[str, Any], *, width: int | None) -> list[str]:
    """`deliveries retry`'s answer for people: whether anything changed, then the delivery."""
    delivery_id = table.cell(delivery.get("id"))
    if delivery.get("retried"):
        head = f"delivery {delivery_id} is due again; a worker delivers it"
    else:
        status = table.cell(delivery.get("status"))
        head = f"delivery {delivery_id} was already {status}; nothing changed"
    fields = table.render_fields(delivery, table.DELIVERY_FIELDS, width=width)
    return [table.clip(head, width), "", *fields]


def _retry(args: argparse.Namespace) -> list[str]:
    answer = _post(args, f"/admin/deliveries/{quote(args.id, safe='')}/retry")
    return [answer] if args.json else retried_lines(answer, width=terminal_width())


def retry_dead_params(args: argparse.Namespace) -> dict[str, str]:
    """The API's filters for the options given (status is the API's default: dead)."""
    return {
        parameter: value
        for option, parameter, _, _ in RETRY_FILTERS
        if (value := getattr(args, option[2:].replace("-", "_"))) is not None
    }


def _retry_dead(args: argparse.Namespace) -> list[str]:
    answer = _post(args, "/admin/deliveries/retry", retry_dead_params(args))
    if args.json:
        return [answer]
    count = answer.get("retried")
    noun = "delivery" if count == 1 else "deliveries"
    return [f"{count} dead {noun} due again; a worker delivers them"]


def cmd_job_refresh(args: argparse.Namespace) -> int:
    """`jobs refresh ID`: poll LLMTune about the job now; print the job as it then stands."""
    return run(args, _refresh)


def cmd_delivery_retry(args: argparse.Namespace) -> int:
    """`deliveries retry ID`: make a dead or retrying delivery due now."""
    return run(args, _retry)


def cmd_retry_dead(args: argparse.Namespace) -> int:
    """`deliveries retry-dead`: make every dead delivery (matching the filters) due now."""
    return run(args, _retry_dead)
