"""The parsers of the admin client commands: `events`, `deliveries`, `jobs` (list, show;
`jobs refresh`, `deliveries retry|retry-dead`) and `tail`, against a running service."""

from __future__ import annotations

import argparse

from service.commands.admin_api import (
    RESOURCES,
    RETRY_FILTERS,
    add_client_options,
    choices_for,
    limit_arg,
)

WRITER_HELP = "admin token (default: the first write token of ADMIN_TOKENS)"


def add_admin_client_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`events`, `deliveries`, `jobs` with their actions, and `tail`."""
    for name, resource in RESOURCES.items():
        group = sub.add_parser(
            name, help=f"list or show {name} of a running service (its admin API, for scripts)"
        )
        verbs = {"jobs": "list, show or refresh", "deliveries": "list, show, retry or retry-dead"}
        actions = group.add_subparsers(
            dest="action",
            required=True,
            help=f"{verbs.get(name, 'list or show')} (default: none, required)",
        )
        listing = actions.add_parser("list", help=f"{name}, newest first, as a table or JSON")
        for option, parameter, text in resource.filters:
            listing.add_argument(
                option, choices=choices_for(name, parameter), help=f"{text} (default: any)"
            )
        listing.add_argument(
            "--limit", type=limit_arg, default=50, help="rows, 1 to 200 (default: %(default)s)"
        )
        listing.add_argument(
            "--cursor",
            help="the next page: the cursor a previous list printed (default: the first page)",
        )
        add_client_options(listing, json_help="print the API's JSON page as is (default: a table)")
        listing.set_defaults(run="service.commands.admin_client:cmd_list", resource=name)
        show = actions.add_parser("show", help=f"one of the {name} in detail")
        what = "our job id or LLMTune's" if name == "jobs" else "its id"
        show.add_argument("id", help=f"{what} (default: none, required)")
        add_client_options(show, json_help="print the API's JSON as is (default: text)")
        show.set_defaults(run="service.commands.admin_client:cmd_show", resource=name)
        if name == "jobs":
            _add_job_refresh(actions)
        if name == "deliveries":
            _add_delivery_retries(actions)
    tail = sub.add_parser(
        "tail", help="print new events and delivery outcomes live until Ctrl-C (GET /admin/stream)"
    )
    add_client_options(
        tail, json_help='one JSON object per line, {"kind", "data"} (default: a text line)'
    )
    tail.set_defaults(run="service.commands.tail:cmd_tail")


def _add_job_refresh(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    refresh = actions.add_parser(
        "refresh",
        help="ask LLMTune about a job now, instead of waiting for its webhook or the next poll "
        "(POST /admin/jobs/{id}/refresh)",
    )
    refresh.add_argument("id", help="our job id or LLMTune's (default: none, required)")
    add_client_options(
        refresh, json_help="print the API's JSON as is (default: text)", token_help=WRITER_HELP
    )
    refresh.set_defaults(run="service.commands.admin_actions:cmd_job_refresh")


def _add_delivery_retries(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retry = actions.add_parser(
        "retry",
        help="make a dead or retrying delivery due now, with a fresh attempt budget "
        "(POST /admin/deliveries/{id}/retry)",
    )
    retry.add_argument("id", help="the delivery's id (default: none, required)")
    add_client_options(
        retry, json_help="print the API's JSON as is (default: text)", token_help=WRITER_HELP
    )
    retry.set_defaults(run="service.commands.admin_actions:cmd_delivery_retry")
    dead = actions.add_parser(
        "retry-dead",
        help="make every dead delivery (or those the options pick) due now, through the "
        "service (POST /admin/deliveries/retry)",
    )
    for option, _, metavar, text in RETRY_FILTERS:
        dead.add_argument(option, metavar=metavar, help=f"{text} (default: any)")
    add_client_options(
        dead,
        json_help='print the API\'s JSON, {"retried": N} (default: text)',
        token_help=WRITER_HELP,
    )
    dead.set_defaults(run="service.commands.admin_actions:cmd_retry_dead")
