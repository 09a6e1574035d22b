"""`serve` (migrations, first-run credentials, uvicorn) and `migrate`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import uvicorn

from service import firstrun
from service.commands.basics import settings_or_exit
from service.commands.bounded_http import BoundedHttpToolsProtocol, head_limit
from service.commands.common import apply_migrations, keys_usable, routes_usable
from service.config import Settings
from service.logs import configure_logging

ENV_FILE = Path(".env")
# What uvicorn builds in each server process; an embedding program may serve its own factory.
APP_FACTORY = "service.app:create_app"


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
    return settings_or_exit()


def cmd_serve(args: argparse.Namespace, *, app: str = APP_FACTORY) -> int:
    """Apply migrations, then run the HTTP server on the factory `app` (an import string)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    if settings.is_sqlite and args.workers > 1:
        print(
            "llmtune-receiver: --workers above 1 needs PostgreSQL (SQLite has one writer)",
            file=sys.stderr,
        )
        return 2
    if not routes_usable(settings):
        return 2
    init_env = firstrun.stdin_is_terminal() if args.init_env is None else args.init_env
    settings = _first_run(settings, init_env)
    if not args.no_migrate and not apply_migrations(settings):
        return 1
    if not keys_usable(settings):
        return 2
    if args.no_worker:
        # Read by create_app in each server process (uvicorn builds the app there).
        os.environ["RUN_WORKER"] = "false"
    # uvicorn re-raises SIGTERM at itself once its graceful shutdown is done, so the default
    # action would end the command with -15 (143 in a container). Shutdown is complete by then.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        app,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        server_header=False,
        # uvicorn's own cap on a request head is for h11 only; this protocol applies it to
        # httptools too (the app answers 431 for anything over MAX_HEADER_BYTES below it).
        http=BoundedHttpToolsProtocol,
        h11_max_incomplete_event_size=head_limit(settings.max_header_bytes),
        timeout_graceful_shutdown=10,
        # Explicit, so uvicorn's own default (trust 127.0.0.1) never lets a local caller spoof
        # the client address or scheme; empty trusts no proxy.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply every pending migration."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    return 0 if apply_migrations(settings) else 1
