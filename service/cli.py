"""`llmtune-receiver serve | worker | migrate | send-test-event`: run, migrate and try it.

Configuration errors end the command with one line naming the variable and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import structlog
import uvicorn

from service import firstrun
from service.bootstrap import Overrides, built_services, configured_routes
from service.clock import SystemClock
from service.config import ConfigError, Settings, load_settings
from service.dispatch.routes_file import RoutesError
from service.dispatch.routing import Route
from service.handlers.base import HandlerDeps
from service.handlers.registry import RouteError, available, build_handlers
from service.logs import configure_logging
from service.store import migrate
from service.store.db import STORAGE_ERRORS, describe_storage_error
from service.store.listen import listening
from service.webhooks.samples import FORMATS, LIFECYCLE, Delivery, sample_delivery

log = structlog.get_logger("service.cli")
ENV_FILE = Path(".env")


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"llmtune-receiver: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _first_run(settings: Settings, init_env: bool) -> Settings:
    """Generate what a first start on a laptop lacks; return the settings to run with."""
    secret = firstrun.new_webhook_secret() if init_env and not settings.webhook_secrets else None
    token = None if settings.admin_tokens else firstrun.new_admin_token()
    if secret is None and token is None:
        return settings
    if init_env:
        firstrun.write_env(ENV_FILE, secret=secret, token=token)
    if token is not None:
        # Made once here in the parent: uvicorn's worker processes inherit it.
        os.environ["ADMIN_TOKENS"] = token
    firstrun.announce(
        secret=secret,
        token=token,
        env_path=ENV_FILE if init_env else None,
        out=sys.stderr,
        show=sys.stderr.isatty(),
    )
    return _settings_or_exit()


def _migrate(settings: Settings) -> bool:
    """Apply migrations; on failure print one line (no traceback) and return False."""
    try:
        migrate.upgrade(settings.database_url)
    except STORAGE_ERRORS as exc:
        reason = describe_storage_error(exc)
        print(f"llmtune-receiver: cannot apply migrations: {reason}", file=sys.stderr)
        return False
    log.info("migrations_applied")
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    """Apply migrations, then run the HTTP server."""
    settings = _settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    if settings.is_sqlite and args.workers > 1:
        print(
            "llmtune-receiver: --workers above 1 needs PostgreSQL (SQLite has one writer)",
            file=sys.stderr,
        )
        return 2
    if not _routes_usable(settings):
        return 2
    init_env = firstrun.stdin_is_terminal() if args.init_env is None else args.init_env
    settings = _first_run(settings, init_env)
    if not args.no_migrate and not _migrate(settings):
        return 1
    if args.no_worker:
        # Read by create_app in each server process (uvicorn builds the app there).
        os.environ["RUN_WORKER"] = "false"
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        # Explicit, so uvicorn's own default (trust 127.0.0.1) never lets a local caller spoof
        # the client address or scheme; empty trusts no proxy.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    return 0


def _routes_usable(settings: Settings) -> bool:
    """Check the routes file and every route's handler options before anything starts."""
    try:
        routes = configured_routes(settings, Overrides())
        asyncio.run(_build_handlers_once(settings, routes))
    except (RoutesError, RouteError) as exc:
        print(f"llmtune-receiver: routes: {exc}", file=sys.stderr)
        return False
    return True


async def _build_handlers_once(settings: Settings, routes: tuple[Route, ...]) -> None:
    async with httpx.AsyncClient() as http:
        deps = HandlerDeps(http=http, clock=SystemClock(), public_url=settings.public_url)
        build_handlers(routes, deps, available())


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the dispatch worker alone (scale it apart from the web servers)."""
    settings = _settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    if not _routes_usable(settings):
        return 2
    asyncio.run(_work(settings, once=args.once))
    return 0


async def _work(settings: Settings, *, once: bool) -> None:
    async with built_services(settings, Overrides()) as svc:
        if once:
            made = await svc.worker.run_until_idle()
            log.info("worker_idle", attempts=made)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with listening(svc.db.engine, svc.notifier.notify) as listens:
            log.info("worker_started", listening=listens, routes=[r.name for r in svc.routes])
            await svc.worker.run(stop)
        log.info("worker_stopped")


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply every pending migration."""
    settings = _settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    return 0 if _migrate(settings) else 1


def _secret_or_none(given: str | None) -> str | None:
    if given is not None:
        return given
    configured = _settings_or_exit().webhook_secrets
    if not configured:
        print("llmtune-receiver: give --secret (no WEBHOOK_SECRETS configured)", file=sys.stderr)
        return None
    return configured[0].get_secret_value()


def _post(url: str, delivery: Delivery) -> bool:
    """Post one delivery, print the answer; True on 2xx."""
    try:
        response = httpx.post(url, content=delivery.body, headers=delivery.headers, timeout=10)
    except httpx.HTTPError as exc:
        print(f"llmtune-receiver: could not deliver to {url}: {exc}", file=sys.stderr)
        return False
    print(f"{response.status_code} {response.text}")
    return response.is_success


def cmd_send_test_event(args: argparse.Namespace) -> int:
    """Sign and post deliveries as LLMTune would; exit 0 only when every answer is 2xx."""
    secret = _secret_or_none(args.secret)
    if secret is None:
        return 2
    job_id = args.job_id or f"job-{uuid.uuid4()}"
    names = LIFECYCLE if args.lifecycle else (args.event,)
    for name in names:
        delivery = sample_delivery(args.format, name, secret, job_id, datetime.now(UTC))
        if args.lifecycle:
            print(f"{name} ", end="")
        if not _post(args.url, delivery):
            return 1
    return 0


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `llmtune-receiver` command."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
