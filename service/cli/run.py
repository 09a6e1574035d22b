"""The parsers of the commands that run the service or post to it: `serve`, `worker`, `migrate`
and `send-test-event`."""

from __future__ import annotations

import argparse

from service.commands.basics import DEFAULT_RECEIVER_URL
from service.links import WEBHOOK_PATH
from service.webhooks.samples import FORMATS, LIFECYCLE


def add_service_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`serve`, `worker`, `migrate` and `send-test-event`, in that order."""
    serve = sub.add_parser("serve", help="apply migrations and run the HTTP server")
    serve.add_argument("--host", help="address to listen on (default: HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default: PORT, else 8000)")
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
    serve.set_defaults(run="service.commands.serve:cmd_serve")

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
    work.set_defaults(run="service.commands.worker:cmd_worker")

    mig = sub.add_parser("migrate", help="apply pending database migrations")
    mig.set_defaults(run="service.commands.serve:cmd_migrate")

    send = sub.add_parser("send-test-event", help="post signed sample deliveries")
    send.add_argument(
        "--url",
        help="the service's base URL or its full webhook URL (default: LLMTUNE_RECEIVER_URL "
        f"from the environment or .env, else {DEFAULT_RECEIVER_URL}; a base URL gets "
        f"{WEBHOOK_PATH})",
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
    send.set_defaults(run="service.commands.send_test_event:cmd_send_test_event")
