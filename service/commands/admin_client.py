"""`events|deliveries|jobs list|show`: a running service's admin API from the command line.

Tables for people (`service/commands/table.py`), `--json` for scripts: the API's JSON exactly as
it answered, one document, so `jq` works. An error answer in the API's shape (`{"error":
{"message", "code", "details"}}`) prints one line and exits 1; so does a service that cannot be
reached. Bad arguments are argparse's exit 2. `tail` (live events) is in `commands/tail.py`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from service.admin_tokens import parse_admin_tokens
from service.commands import table
from service.commands.admin_api import RESOURCES, Resource
from service.commands.basics import settings_or_exit

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
Detail = Callable[..., list[str]]


class ClientError(Exception):
    """The command cannot go on; the message is its one line, `code` its exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# How each list is shown: its table's columns, and one item in detail.
VIEWS: dict[str, tuple[tuple[table.Column, ...], Detail]] = {
    "events": (table.EVENT_COLUMNS, table.event_detail),
    "deliveries": (table.DELIVERY_COLUMNS, table.delivery_detail),
    "jobs": (table.JOB_COLUMNS, table.job_detail),
}


def read_token(given: str | None, *, write: bool = False) -> str:
    """The token to call the admin API with: `--token`, else the secret of the first entry of
    ADMIN_TOKENS (every token may read), or of the first write token when the call changes
    something. `ClientError` (exit 2) when there is none."""
    if given:
        return given
    configured = settings_or_exit().admin_tokens
    tokens = parse_admin_tokens([token.get_secret_value() for token in configured])
    usable = [token for token in tokens if token.can_write or not write]
    if not usable:
        missing = "no write token in ADMIN_TOKENS" if tokens else "no ADMIN_TOKENS configured"
        raise ClientError(f"give --token ({missing})", code=2)
    return usable[0].secret.decode()


def terminal_width() -> int | None:
    """Columns to cut lines to on a terminal (its width, or `COLUMNS`); None when output goes
    elsewhere, so a script gets whole lines and whole ids whatever the shell exports."""
    if not sys.stdout.isatty():
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


def call(
    url: str,
    token: str,
    path: str,
    *,
    method: str = "GET",
    params: Mapping[str, str] | None = None,
    body: object = None,
) -> httpx.Response:
    """`method` `path` of the service at `url`; the 2xx answer, else `ClientError` with one
    line."""
    target = url.rstrip("/") + path
    try:
        response = httpx.request(
            method,
            target,
            params=params,
            json=body,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach {url}: {exc or type(exc).__name__}") from None
    if not response.is_success:
        raise ClientError(api_error(response))
    return response


def json_body(response: httpx.Response) -> Any:
    """The answer's JSON document; `ClientError` when it is not JSON."""
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
    response = call(args.url, read_token(args.token), resource.path, params=params)
    if args.json:
        return [response.text]
    page = json_body(response)
    columns, _ = VIEWS[resource.name]
    lines = table.render_table(columns, page["items"], width=terminal_width())
    if page.get("nextCursor"):
        # On stderr, so the table stays clean for grep and friends.
        print(f"more: add --cursor {page['nextCursor']}", file=sys.stderr)
    return lines


def _show(args: argparse.Namespace, resource: Resource) -> list[str]:
    # Quoted whole, so a `?`, `#` or space stays part of the id instead of ending the path.
    path = f"{resource.path}/{quote(args.id, safe='')}"
    response = call(args.url, read_token(args.token), path)
    if args.json:
        return [response.text]
    _, detail = VIEWS[resource.name]
    return detail(json_body(response), width=terminal_width())


def run(args: argparse.Namespace, action: Callable[[argparse.Namespace], list[str]]) -> int:
    """Print what `action` returns, exit 0; a `ClientError` as one line on stderr instead."""
    try:
        lines = action(args)
    except ClientError as exc:
        print(f"llmtune-receiver: {exc}", file=sys.stderr)
        return exc.code
    print("\n".join(lines))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """`<resource> list`: a page of the list, newest first, as a table or the API's JSON."""
    return run(args, lambda a: _list(a, RESOURCES[a.resource]))


def cmd_show(args: argparse.Namespace) -> int:
    """`<resource> show ID`: one item in detail, as text or the API's JSON."""
    return run(args, lambda a: _show(a, RESOURCES[a.resource]))
