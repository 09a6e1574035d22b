"""The parsers of the admin client commands: `events`, `deliveries`, `jobs` (list, show) and
`tail`, against a running service."""

from __future__ import annotations

import argparse

from service.commands.admin_api import RESOURCES, add_client_options, choices_for, limit_arg


def add_admin_client_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, resource in RESOURCES.items():
        group = sub.add_parser(
            name, help=f"list or show {name} of a running service (its admin API, for scripts)"
        )
        actions = group.add_subparsers(
            dest="action", required=True, help="list or show (default: none, required)"
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
    tail = sub.add_parser(
        "tail", help="print new events and delivery outcomes live until Ctrl-C (GET /admin/stream)"
    )
    add_client_options(
        tail, json_help='one JSON object per line, {"kind", "data"} (default: a text line)'
    )
    tail.set_defaults(run="service.commands.tail:cmd_tail")
