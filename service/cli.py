"""`llmtune-receiver serve | worker | migrate | send-test-event | replay | retry-dead | purge |
submit | demo | fake-llmtune | events | deliveries | jobs | tail | keys | rotate-keys`: run,
migrate and try it; queue stored events or dead deliveries again; delete old events; submit
fine-tunes; see the whole loop against a fake LLMTune; read a running service's events,
deliveries and jobs, or follow them; make signing and encryption keys, and reseal stored data
under a new one.

Configuration errors end the command with one line naming the variable and exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from service.commands.admin_client import (
    RESOURCES,
    add_client_options,
    choices_for,
    cmd_list,
    cmd_show,
    limit_arg,
)
from service.commands.demo import cmd_demo
from service.commands.fake_llmtune import cmd_fake_llmtune
from service.commands.keys import cmd_keys_generate
from service.commands.purge import DEFAULT_BATCH, MAX_BATCH, cmd_purge
from service.commands.requeue import cmd_replay, cmd_retry_dead
from service.commands.rotate_keys import DEFAULT_BATCH as ROTATE_BATCH
from service.commands.rotate_keys import MAX_BATCH as ROTATE_MAX_BATCH
from service.commands.rotate_keys import cmd_rotate_keys
from service.commands.send_test_event import cmd_send_test_event
from service.commands.serve import cmd_migrate, cmd_serve
from service.commands.submit import cmd_submit
from service.commands.tail import cmd_tail
from service.commands.worker import cmd_worker
from service.webhooks.samples import FORMATS, LIFECYCLE


def _add_requeue_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay", help="queue stored events' deliveries again (a worker delivers them)"
    )
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--event", metavar="ID", help="replay this one stored event (default: none; or --since)"
    )
    which.add_argument(
        "--since",
        metavar="TIME",
        help="replay every event received at or after this RFC 3339 time, oldest first "
        "(default: none; or --event)",
    )
    replay.add_argument(
        "--until",
        metavar="TIME",
        help="with --since: only events received before this RFC 3339 time (default: now)",
    )
    replay.add_argument(
        "--route",
        metavar="NAME",
        help="queue only to this enabled route "
        "(default: every enabled route the event's type matches)",
    )
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="only count what would be queued; change nothing (default: off)",
    )
    replay.set_defaults(func=cmd_replay)

    retry = sub.add_parser(
        "retry-dead", help="make dead deliveries due again (a worker delivers them)"
    )
    retry.add_argument(
        "--route", metavar="NAME", help="only dead deliveries to this route (default: any route)"
    )
    retry.add_argument(
        "--job-id", metavar="ID", help="only deliveries of this LLMTune job (default: any job)"
    )
    retry.add_argument(
        "--dry-run",
        action="store_true",
        help="only count the dead deliveries that would be retried; change nothing (default: off)",
    )
    retry.set_defaults(func=cmd_retry_dead)


def _add_rotate_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rotate = sub.add_parser(
        "rotate-keys",
        help="reseal stored bodies, headers, inference runs and job datasets under the first "
        "ENCRYPTION_KEYS key",
        description="Reseal every stored raw body, header list, inference prompt and output, and "
        "job dataset location that is not yet under the first key of ENCRYPTION_KEYS "
        "(including rows kept in clear before encryption was turned on), in short batches with "
        "progress; safe while the service runs, and resumable: run it again after an "
        "interruption. Then the older keys can be removed from ENCRYPTION_KEYS. Run it once "
        "every process has the new key list.",
    )
    rotate.add_argument(
        "--to-clear",
        action="store_true",
        help="write every row back in clear instead (to turn encryption at rest off; stop the "
        "services first) (default: off)",
    )
    rotate.add_argument(
        "--batch-size",
        type=int,
        default=ROTATE_BATCH,
        metavar="N",
        help=f"rows per transaction, 1 to {ROTATE_MAX_BATCH} (default: %(default)s)",
    )
    rotate.set_defaults(func=cmd_rotate_keys)


def _add_purge_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    purge = sub.add_parser(
        "purge",
        help="delete old events with their deliveries, attempts and inference runs (jobs are kept)",
        description="Delete events received longer ago than --older-than, oldest first, in "
        "short batches (safe while the service runs). Their deliveries, delivery attempts and "
        "inference runs go with them. An event with a delivery still to make (pending, in "
        "flight, retrying) is kept; dead and succeeded deliveries do not keep one. Jobs are "
        "never deleted: the job history stays.",
    )
    purge.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="delete events received longer ago than this: <n>d, <n>h or <n>m (days, hours, "
        "minutes), e.g. 90d (default: none, required)",
    )
    purge.add_argument(
        "--dry-run",
        action="store_true",
        help="only count what would be deleted and kept; delete nothing (default: off)",
    )
    purge.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"events per transaction, 1 to {MAX_BATCH} (default: %(default)s)",
    )
    purge.set_defaults(func=cmd_purge)


def _add_fake_llmtune_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fake = sub.add_parser(
        "fake-llmtune",
        help="run a fake LLMTune (API under /v1, signed W3 webhooks) for tests and demos",
    )
    fake.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    fake.add_argument("--port", type=int, default=8081, help="TCP port (default: %(default)s)")
    fake.add_argument(
        "--secret",
        required=True,
        help="webhook secret; the whole string is the HMAC-SHA256 key (default: none, required)",
    )
    fake.add_argument(
        "--step-seconds",
        type=float,
        default=1.0,
        help="seconds between a job's lifecycle steps; 0: only POST /_fake/advance moves jobs "
        "(default: %(default)s)",
    )
    fake.add_argument(
        "--workspace-url",
        metavar="URL",
        help="also post every webhook here (default: none, only each job's webhookUrl)",
    )
    fake.add_argument(
        "--api-key",
        metavar="KEY",
        help="require `Authorization: Bearer KEY` on /v1 (default: none, no key needed)",
    )
    fake.add_argument(
        "--webhook-attempts",
        type=int,
        default=5,
        help="attempts per webhook before giving up (default: %(default)s)",
    )
    fake.add_argument(
        "--retry-base-seconds",
        type=float,
        default=1.0,
        help="wait after a webhook's first failed attempt, doubled after each further one "
        "(default: %(default)s)",
    )
    fake.add_argument(
        "--duplicates", action="store_true", help="send every webhook twice (default: off)"
    )
    fake.add_argument(
        "--reorder",
        action="store_true",
        help="send training.started after training.completed/failed (default: off)",
    )
    fake.add_argument(
        "--drop",
        action="append",
        metavar="EVENT",
        help="never send this event; repeatable (default: none)",
    )
    fake.add_argument(
        "--fail-status",
        type=int,
        metavar="STATUS",
        help="answer /v1 requests with this HTTP status, e.g. 429, 500, 402 (default: none)",
    )
    fake.add_argument(
        "--fail-times",
        type=int,
        metavar="N",
        help="with --fail-status: fail only the next N requests (default: every request)",
    )
    fake.add_argument(
        "--flat-errors",
        action="store_true",
        help='error bodies as {"error": "msg", "message": "msg"} (default: nested)',
    )
    fake.add_argument(
        "--slow-seconds",
        type=float,
        default=0.0,
        help="delay every /v1 answer by this many seconds (default: %(default)s)",
    )
    fake.set_defaults(func=cmd_fake_llmtune)


def _add_job_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = sub.add_parser(
        "submit", help="submit a fine-tune through a running service (POST /admin/jobs)"
    )
    submit.add_argument(
        "--base-model", required=True, help="the model to fine-tune (default: none, required)"
    )
    submit.add_argument(
        "--dataset", required=True, help="dataset URL or upload id (default: none, required)"
    )
    submit.add_argument(
        "--training-method", default="sft", help="training method (default: %(default)s)"
    )
    submit.add_argument("--learning-rate", type=float, help="learning rate (default: LLMTune's)")
    submit.add_argument("--epochs", type=int, help="epochs (default: LLMTune's)")
    submit.add_argument("--batch-size", type=int, help="batch size (default: LLMTune's)")
    submit.add_argument(
        "--idempotency-key",
        help="repeat a submission safely: the same key never makes a second job "
        "(default: none, each call is a new job)",
    )
    submit.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the service (default: %(default)s)"
    )
    submit.add_argument("--token", help="admin token (default: first of ADMIN_TOKENS)")
    submit.set_defaults(func=cmd_submit)
    demo = sub.add_parser(
        "demo", help="run a fake LLMTune and the service, submit a job, print its timeline"
    )
    demo.add_argument(
        "--step", type=float, default=1.0, help="seconds per lifecycle step (default: %(default)s)"
    )
    demo.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the job (default: %(default)s)",
    )
    demo.set_defaults(func=cmd_demo)


def _add_admin_client_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        listing.set_defaults(func=cmd_list, resource=name)
        show = actions.add_parser("show", help=f"one of the {name} in detail")
        what = "our job id or LLMTune's" if name == "jobs" else "its id"
        show.add_argument("id", help=f"{what} (default: none, required)")
        add_client_options(show, json_help="print the API's JSON as is (default: text)")
        show.set_defaults(func=cmd_show, resource=name)
    tail = sub.add_parser(
        "tail", help="print new events and delivery outcomes live until Ctrl-C (GET /admin/stream)"
    )
    add_client_options(
        tail, json_help='one JSON object per line, {"kind", "data"} (default: a text line)'
    )
    tail.set_defaults(func=cmd_tail)


def _add_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser(
        "keys", help="make signing and encryption keys (no database or service needed)"
    )
    actions = keys.add_subparsers(
        dest="action", required=True, help="generate (default: none, required)"
    )
    generate = actions.add_parser(
        "generate",
        help="print a new ed25519 key pair for an http route's v1a signatures, or "
        "(--encryption) a key for ENCRYPTION_KEYS",
        description="Print a new ed25519 key pair: the whsk_ private key (its 32-byte seed) goes "
        'into an http route\'s options with signing = "v1a" or "both"; the whpk_ public key goes '
        "to the destination's owner, who verifies the v1a signatures with it. With "
        "--encryption, print one AES-256 key (base64 of 32 random bytes) for ENCRYPTION_KEYS.",
    )
    generate.add_argument(
        "--encryption",
        action="store_true",
        help="print a key for ENCRYPTION_KEYS (encryption at rest) instead (default: off)",
    )
    generate.add_argument(
        "--json",
        action="store_true",
        help='print {"privateKey", "publicKey"} (or {"encryptionKey"}) as one JSON object '
        "(default: two TOML lines and a comment; the key alone with --encryption)",
    )
    generate.set_defaults(func=cmd_keys_generate)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="llmtune-receiver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="apply migrations and run the HTTP server")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes; above 1 needs PostgreSQL (default: %(default)s)",
    )
    serve.add_argument(
        "--no-migrate", action="store_true", help="do not apply migrations first (default: apply)"
    )
    serve.add_argument(
        "--init-env",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write a .env with a generated secret and admin token when none is configured "
        "(default: only when started from a terminal)",
    )
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not run the dispatch worker in this process (default: run it)",
    )
    serve.set_defaults(func=cmd_serve)

    work = sub.add_parser("worker", help="run the dispatch worker without a web server")
    work.add_argument(
        "--once",
        action="store_true",
        help="deliver what is due, then exit (default: run until SIGTERM)",
    )
    work.add_argument(
        "--metrics-port",
        type=int,
        help="serve GET /metrics (Prometheus text) on this port (default: none, not served)",
    )
    work.add_argument(
        "--metrics-host",
        default="0.0.0.0",  # noqa: S104 - a scrape comes from another pod or host
        help="address for --metrics-port (default: %(default)s)",
    )
    work.set_defaults(func=cmd_worker)

    mig = sub.add_parser("migrate", help="apply pending database migrations")
    mig.set_defaults(func=cmd_migrate)

    send = sub.add_parser("send-test-event", help="post signed sample deliveries")
    send.add_argument(
        "--url",
        default="http://127.0.0.1:8000/webhooks/llmtune",
        help="where to post (default: %(default)s)",
    )
    send.add_argument("--secret", help="webhook secret (default: first of WEBHOOK_SECRETS)")
    send.add_argument(
        "--event", default="training.completed", help="event name to send (default: %(default)s)"
    )
    send.add_argument(
        "--lifecycle",
        action="store_true",
        help=f"send {', '.join(LIFECYCLE)} for one job, in order, instead of one --event "
        "(default: off)",
    )
    send.add_argument(
        "--format",
        choices=FORMATS,
        default="w3",
        help="LLMTune docs version to imitate (default: %(default)s)",
    )
    send.add_argument("--job-id", help="job id to put in the body (default: a fresh one)")
    send.set_defaults(func=cmd_send_test_event)
    _add_requeue_parsers(sub)
    _add_purge_parser(sub)
    _add_fake_llmtune_parser(sub)
    _add_job_parsers(sub)
    _add_admin_client_parsers(sub)
    _add_keys_parser(sub)
    _add_rotate_keys_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `llmtune-receiver` command."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
