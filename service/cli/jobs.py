"""The parsers of the job commands: `submit`, `demo` and `fake-llmtune`."""

from __future__ import annotations

import argparse

from service.commands.admin_api import URL_HELP
from service.commands.basics import DEFAULT_RECEIVER_URL


def add_fake_llmtune_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    fake.set_defaults(run="service.commands.fake_llmtune:cmd_fake_llmtune")


def add_job_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    submit.add_argument("--url", help=URL_HELP % DEFAULT_RECEIVER_URL)
    submit.add_argument("--token", help="admin token (default: first of ADMIN_TOKENS)")
    submit.add_argument(
        "--json", action="store_true", help="print the API's JSON as is (default: text)"
    )
    submit.set_defaults(run="service.commands.submit:cmd_submit")
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
    demo.add_argument("--port", type=int, help="the receiver's TCP port (default: a free one)")
    demo.set_defaults(run="service.commands.demo:cmd_demo")
