"""`events|deliveries|jobs list|show`: a running service's admin API from the command line.

Tables for people (`service/commands/table.py`), `--json` for scripts: the API's JSON exactly as
it answered, one document, so `jq` works. An error answer in the API's shape (`{"error":
{"message", "code", "details"}}`) prints one line and exits 1; so does a service that cannot be
reached. Bad arguments are argparse's exit 2. `tail` (live events) is in `commands/tail.py`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from service.admin_tokens import parse_admin_tokens
from service.commands import table
from service.commands.common import settings_or_exit
from service.delivery_status import DELIVERY_STATUSES
from service.job_status import JOB_STATUSES

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
Detail = Callable[..., list[str]]


class ClientError(Exception):
    """The command cannot go on; the message is its one line, `code` its exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Resource:
    """One admin list: its path, the options that filter it, and how it is shown."""

    name: str
    path: str
    # (option, API parameter, help); the option's value is sent as the parameter.
    filters: tuple[tuple[str, str, str], ...]
    columns: tuple[table.Column, ...]
    detail: Detail


RESOURCES = {
    "events": Resource(
        "events",
        "/admin/events",
        (
            ("--type", "type", "only events of this type, e.g. training.completed"),
            ("--job-id", "jobId", "only events of this LLMTune job"),
        ),
        table.EVENT_COLUMNS,
        table.event_detail,
    ),
    "deliveries": Resource(
        "deliveries",
        "/admin/deliveries",
        (
            ("--status", "status", "only deliveries in this state"),
            ("--route", "route", "only deliveries to this route"),
            ("--event-id", "eventId", "only deliveries of this event"),
            ("--job-id", "jobId", "only deliveries of this LLMTune job"),
        ),
        table.DELIVERY_COLUMNS,
        table.delivery_detail,
    ),
    "jobs": Resource(
        "jobs",
        "/admin/jobs",
        (("--status", "status", "only jobs in this state"),),
        table.JOB_COLUMNS,
        table.job_detail,
    ),
}


def read_token(given: str | None) -> str:
    """The token to call the admin API with: `--token`, else the secret of the first entry of
    ADMIN_TOKENS (every token may read). `ClientError` (exit 2) when there is neither."""
    if given:
        return given
    configured = settings_or_exit().admin_tokens
    tokens = parse_admin_tokens([token.get_secret_value() for token in configured])
    if not tokens:
        raise ClientError("give --token (no ADMIN_TOKENS configured)", code=2)
    return tokens[0].secret.decode()


def terminal_width() -> int | None:
    """Columns to cut lines to: the terminal's (or `COLUMNS`), None when output is piped."""
    if not (os.environ.get("COLUMNS") or sys.stdout.isatty()):
        return None
    return shutil.get_terminal_size().columns


def api_error(response: httpx.Response) -> str:
    """The one line for an error answer: the API's message and code, else the status."""
    try:
        error = response.json()["error"]
        message, code = str(error["message"]), str(error["code"])
    except (ValueError, KeyError, TypeError):
        return f"{response.request.url} answered HTTP {response.status_code}"
    return f"{table.printable(message)} ({response.status_code} {table.printable(code)})"


def get(url: str, token: str, path: str, params: Mapping[str, str] | None = None) -> httpx.Response:
    """GET `path` of the service at `url`; the 2xx answer, else `ClientError` with one line."""
    target = url.rstrip("/") + path
    try:
        response = httpx.get(
            target,
            params=params,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach {url}: {exc or type(exc).__name__}") from None
    if not response.is_success:
        raise ClientError(api_error(response))
    return response


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ClientError(f"{response.request.url} did not answer JSON") from None


def _list(args: argparse.Namespace, resource: Resource) -> list[str]:
    params = {
        parameter: str(value)
        for option, parameter, _ in resource.filters
        if (value := getattr(args, option[2:].replace("-", "_"))) is not None
    }
    params["limit"] = str(args.limit)
    if args.cursor:
        params["cursor"] = args.cursor
    response = get(args.url, read_token(args.token), resource.path, params)
    if args.json:
        return [response.text]
    page = _json_body(response)
    lines = table.render_table(resource.columns, page["items"], width=terminal_width())
    if page.get("nextCursor"):
        # On stderr, so the table stays clean for grep and friends.
        print(f"more: add --cursor {page['nextCursor']}", file=sys.stderr)
    return lines


def _show(args: argparse.Namespace, resource: Resource) -> list[str]:
    # Quoted whole, so a `?`, `#` or space stays part of the id instead of ending the path.
    path = f"{resource.path}/{quote(args.id, safe='')}"
    response = get(args.url, read_token(args.token), path)
    if args.json:
        return [response.text]
    return resource.detail(_json_body(response), width=terminal_width())


def _run(args: argparse.Namespace, action: Callable[..., list[str]]) -> int:
    try:
        lines = action(args, RESOURCES[args.resource])
    except ClientError as exc:
        print(f"llmtune-receiver: {exc}", file=sys.stderr)
        return exc.code
    print("\n".join(lines))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """`<resource> list`: a page of the list, newest first, as a table or the API's JSON."""
    return _run(args, _list)


def cmd_show(args: argparse.Namespace) -> int:
    """`<resource> show ID`: one item in detail, as text or the API's JSON."""
    return _run(args, _show)


def limit_arg(text: str) -> int:
    """`--limit`: an integer from 1 to 200 (the API's bounds), else an argparse error."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 200:
        raise argparse.ArgumentTypeError("must be an integer from 1 to 200")
    return int(text)


def add_client_options(parser: argparse.ArgumentParser, *, json_help: str) -> None:
    """`--url`, `--token` and `--json`, shared by every admin client command."""
    parser.add_argument("--url", default=DEFAULT_URL, help="the service (default: %(default)s)")
    parser.add_argument(
        "--token", help="admin token (default: the first of ADMIN_TOKENS; read scope is enough)"
    )
    parser.add_argument("--json", action="store_true", help=json_help)


def choices_for(resource: str, parameter: str) -> Sequence[str] | None:
    """The values a filter accepts where the API has a fixed set (the statuses), so a typo is
    an argument error (exit 2) before any request."""
    if parameter != "status":
        return None
    return DELIVERY_STATUSES if resource == "deliveries" else JOB_STATUSES
