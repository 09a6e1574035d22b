"""`llmtune-receiver serve | worker | migrate | send-test-event | replay | retry-dead | purge |
submit | demo | fake-llmtune | events | deliveries | jobs | tail | keys | rotate-keys`: run,
migrate and try it; queue stored events or dead deliveries again; delete old events; submit
fine-tunes; see the whole loop against a fake LLMTune; read a running service's events,
deliveries and jobs, or follow them; make signing and encryption keys, and reseal stored data
under a new one.

Configuration errors end the command with one line naming the variable and exit code 2. A reader
that goes away (`| head -1`) ends any command quietly with exit code 141, as SIGPIPE would.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import cast

from service.cli import client, jobs, maintenance, run
from service.commands.basics import receiver_url

Command = Callable[[argparse.Namespace], int]
# 128 + SIGPIPE: what a shell reports for a program the closed pipe killed.
BROKEN_PIPE_EXIT = 141


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface. Each command names its function as `module:function` (the
    `run` default), imported only when that command runs, so `--help` imports no command."""
    parser = argparse.ArgumentParser(prog="llmtune-receiver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_service_parsers(sub)
    maintenance.add_requeue_parsers(sub)
    maintenance.add_purge_parser(sub)
    jobs.add_fake_llmtune_parser(sub)
    jobs.add_job_parsers(sub)
    client.add_admin_client_parsers(sub)
    maintenance.add_keys_parser(sub)
    maintenance.add_rotate_keys_parser(sub)
    return parser


def load_command(target: str) -> Command:
    """The function a `module:function` target names, its module imported now."""
    module, _, name = target.partition(":")
    return cast(Command, getattr(importlib.import_module(module), name))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `llmtune-receiver` command."""
    try:
        try:
            args = build_parser().parse_args(argv)
            if getattr(args, "url", "") is None:
                # The client commands' --url left out: LLMTUNE_RECEIVER_URL, read only now.
                args.url = receiver_url()
            code = load_command(args.run)(args)
        finally:
            # Here, not at exit: a short output (or `--help`, which exits) is still in the
            # buffer when the reader is already gone.
            sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at nothing, so the interpreter's flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_EXIT
    return code
