"""`serve` (migrations, first-run credentials, uvicorn) and `migrate`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn

from service import firstrun
from service.commands import listening
from service.commands.basics import receiver_url, settings_or_exit
from service.commands.bounded_http import BoundedHttpToolsProtocol, head_limit
from service.commands.common import (
    apply_migrations,
    keys_usable,
    log,
    routes_usable,
    schema_current_or_explain,
)
from service.commands.listening import bind_or_exit
from service.config import Settings
from service.links import bound_url
from service.logs import configure_logging, uses_console

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
    host = settings.host if args.host is None else args.host
    port = settings.port if args.port is None else args.port
    if settings.is_sqlite and args.workers > 1:
        print(
            "llmtune-receiver: --workers above 1 needs PostgreSQL (SQLite has one writer)",
            file=sys.stderr,
        )
        return 2
    if not routes_usable(settings):
        return 2
    # Bound before anything starts: a port in use ends here, with one line and exit 2.
    sock = bind_or_exit(host, port)
    init_env = firstrun.stdin_is_terminal() if args.init_env is None else args.init_env
    settings = _first_run(settings, init_env)
    settings = _with_public_url(settings, bound_url(host, port))
    schema = _schema(settings, migrate=not args.no_migrate)
    if schema is None:
        return 1
    if not keys_usable(settings):
        return 2
    if args.no_worker:
        # Read by create_app in each server process (uvicorn builds the app there).
        os.environ["RUN_WORKER"] = "false"
    # uvicorn re-raises SIGTERM at itself once its graceful shutdown is done, so the default
    # action would end the command with -15 (143 in a container). Shutdown is complete by then.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ready = firstrun.banner(
        base_url=bound_url(host, port),
        public_url=settings.public_url,
        schema=schema,
        client_url=receiver_url(),
    )
    started = listening.serve(
        _uvicorn_config(app, settings, args.workers),
        sock,
        _announce(ready, console=uses_console(settings.log_format)),
    )
    return 0 if started else 1


def _with_public_url(settings: Settings, bound: str) -> Settings:
    """PUBLIC_URL, or (unset) the address bound here; warn when job callbacks would name
    another port than the one this server listens on."""
    if not settings.public_url_given:
        # Read by create_app in each server process, as the operator's own PUBLIC_URL would be.
        os.environ["PUBLIC_URL"] = bound
        return settings_or_exit()
    given = urlsplit(settings.public_url)
    try:
        given_port = given.port or (443 if given.scheme == "https" else 80)
    except ValueError:
        given_port = None
    if settings.llmtune_api_key is not None and given_port != urlsplit(bound).port:
        log.warning(
            "public_url_port_differs",
            public_url=settings.public_url,
            listening=bound,
            message=f"PUBLIC_URL names port {given_port} but this server listens on "
            f"{urlsplit(bound).port}: job callbacks reach it only through a proxy that forwards",
        )
    return settings


def _schema(settings: Settings, *, migrate: bool) -> str | None:
    """The schema line of the banner after migrating (None: migrations failed); with
    `--no-migrate`, what is wrong with the schema, said once in the log."""
    if migrate:
        done = apply_migrations(settings, quiet=True)
        return None if done is None else done.summary()
    if problem := schema_current_or_explain(settings):
        log.warning("database_not_migrated", message=problem)
        return "migrations not applied: run `llmtune-receiver migrate`"
    return "migrations not applied (--no-migrate)"


def _announce(ready: firstrun.Banner, *, console: bool) -> Callable[[], None]:
    """Print the banner for a person, or log it as one line where the logs are JSON."""

    def announce() -> None:
        if console:
            sys.stderr.write(ready.text())
            sys.stderr.flush()
        else:
            log.info("ready", **ready.fields())

    return announce


def _uvicorn_config(app: str, settings: Settings, workers: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        factory=True,
        workers=workers,
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


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply every pending migration; print one summary line."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    done = apply_migrations(settings)
    if done is None:
        return 1
    print(f"llmtune-receiver: {done.summary()}")
    return 0
