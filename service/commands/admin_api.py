"""The admin API as the client commands (`events|deliveries|jobs list|show`, `jobs refresh`,
`deliveries retry|retry-dead`, `tail`) see it before they send anything: each list's path and
filters, and the options they share.

The parser reads this module for every command line, `--help` included: it imports argparse and
the status names only (no HTTP client, no tables, no settings).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from service.commands.basics import DEFAULT_RECEIVER_URL
from service.delivery_status import DELIVERY_STATUSES
from service.job_status import JOB_STATUSES

URL_HELP = "the service (default: LLMTUNE_RECEIVER_URL from the environment or .env, else %s)"


@dataclass(frozen=True, slots=True)
class Resource:
    """One admin list: its path and the options that filter it."""

    name: str
    path: str
    # (option, API parameter, help); the option's value is sent as the parameter.
    filters: tuple[tuple[str, str, str], ...]


RESOURCES = {
    "events": Resource(
        "events",
        "/admin/events",
        (
            ("--type", "type", "only events of this type, e.g. training.completed"),
            ("--job-id", "jobId", "only events of this LLMTune job"),
        ),
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
    ),
    "jobs": Resource(
        "jobs",
        "/admin/jobs",
        (("--status", "status", "only jobs in this state"),),
    ),
}


# `deliveries retry-dead` (POST /admin/deliveries/retry): (option, API parameter, metavar, help).
RETRY_FILTERS = (
    ("--route", "route", "NAME", "only dead deliveries to this route"),
    ("--event-id", "eventId", "ID", "only dead deliveries of this event"),
    ("--job-id", "jobId", "ID", "only dead deliveries of this LLMTune job"),
    ("--since", "since", "TIME", "only deliveries created at or after this RFC 3339 time"),
    ("--until", "until", "TIME", "only deliveries created before this RFC 3339 time"),
)


def limit_arg(text: str) -> int:
    """`--limit`: an integer from 1 to 200 (the API's bounds), else an argparse error."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 200:
        raise argparse.ArgumentTypeError("must be an integer from 1 to 200")
    return int(text)


READER_HELP = "admin token (default: the first of ADMIN_TOKENS; read scope is enough)"


def add_client_options(
    parser: argparse.ArgumentParser, *, json_help: str, token_help: str = READER_HELP
) -> None:
    """`--url`, `--token` and `--json`, shared by every admin client command."""
    parser.add_argument("--url", help=URL_HELP % DEFAULT_RECEIVER_URL)
    parser.add_argument("--token", help=token_help)
    parser.add_argument("--json", action="store_true", help=json_help)


def choices_for(resource: str, parameter: str) -> Sequence[str] | None:
    """The values a filter accepts where the API has a fixed set (the statuses), so a typo is
    an argument error (exit 2) before any request."""
    if parameter != "status":
        return None
    return DELIVERY_STATUSES if resource == "deliveries" else JOB_STATUSES
