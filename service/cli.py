"""`llmtune-receiver serve | worker | migrate | send-test-event | replay | retry-dead`: run,
migrate and try it; queue stored events or dead deliveries again.

Configuration errors end the command with one line naming the variable and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import NoReturn, TextIO

import httpx
import sqlalchemy as sa
import structlog
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession

from service import firstrun
from service.bootstrap import Overrides, built_services, configured_routes
from service.clock import SystemClock
from service.config import ConfigError, Settings, load_settings
from service.dispatch.routes_file import RoutesError
from service.dispatch.routing import Route, routes_for
from service.events import parse_time
from service.handlers.base import HandlerDeps
from service.handlers.registry import RouteError, available, build_handlers
from service.logs import configure_logging
from service.store import deliveries, events, migrate
from service.store.db import (
    STORAGE_ERRORS,
    Database,
    StoreUnavailable,
    describe_storage_error,
    open_database,
)
from service.store.deliveries import NOTIFY_CHANNEL, DeliveryFilter
from service.store.events import EventRef
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
    # uvicorn re-raises SIGTERM at itself once its graceful shutdown is done, so the default
    # action would end the command with -15 (143 in a container). Shutdown is complete by then.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
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
        routes = configured_routes(settings, Overrides()).routes
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


# Events per replay transaction: short write locks (SQLite has one writer) and bounded memory.
REPLAY_BATCH = 200
# Dead deliveries read per page when a dry run counts them.
COUNT_PAGE = 1000
# Which routes an event is replayed to.
Targets = Callable[[EventRef], list[Route]]
# Back to the start of the line, erase it (the progress line is redrawn in place).
_CLEAR_LINE = "\r\x1b[K"


def _exit(code: int, message: str) -> NoReturn:
    print(f"llmtune-receiver: {message}", file=sys.stderr)
    raise SystemExit(code)


class Progress:
    """One line of progress on `out`: redrawn in place on a terminal (at most every `every`
    seconds), silent otherwise; `finish` then writes one summary line either way."""

    def __init__(
        self,
        label: str,
        out: TextIO,
        *,
        live: bool | None = None,
        width: int | None = None,
        every: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._label = label
        self._out = out
        self._live = out.isatty() if live is None else live
        self._width = width or (_columns(out) if self._live else 80)
        self._every = every
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None

    def update(self, text: str) -> None:
        """Show `text` now, unless off a terminal or the last redraw is too recent."""
        now = self._clock()
        if not self._live or (self._drawn_at is not None and now - self._drawn_at < self._every):
            return
        self._drawn_at = now
        # Cut short of the terminal's width: a wrapped line could not be redrawn in place.
        self._out.write(_CLEAR_LINE + f"{self._label}: {text}"[: self._width - 1])
        self._out.flush()

    def finish(self, text: str) -> None:
        """Replace the progress line with a summary and the time taken."""
        elapsed = self._clock() - self._started
        self._end_line()
        self._out.write(f"{self._label}: {text} in {elapsed:.1f} s\n")
        self._out.flush()

    def abandon(self) -> None:
        """End a drawn progress line, so that what is printed next starts on its own line."""
        if self._drawn_at is not None:
            self._out.write("\n")
            self._out.flush()
            self._drawn_at = None

    def _end_line(self) -> None:
        if self._drawn_at is not None:
            self._out.write(_CLEAR_LINE)


def _columns(out: TextIO) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (OSError, ValueError):
        return 80


@dataclass(slots=True)
class _Tally:
    """What a replay has done so far (committed work only)."""

    events: int = 0
    deliveries: int = 0
    last: tuple[datetime, str] | None = None


def _time_option(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = parse_time(value)
    if parsed is None:
        _exit(2, f"{option}: not an RFC 3339 time such as 2025-11-08T14:22:31Z: {value[:64]!r}")
    return parsed


def _routes_or_exit(settings: Settings) -> tuple[Route, ...]:
    try:
        return configured_routes(settings, Overrides()).routes
    except RoutesError as exc:
        _exit(2, f"routes: {exc}")


def _replay_targets(routes: tuple[Route, ...], named: str | None) -> Targets:
    """Like the admin replay: the enabled routes the event matches (as at ingest: its type and
    workspace), or the one enabled route named."""
    if named is None:
        return lambda ref: routes_for(ref.type, routes, ref.workspace)
    chosen = [route for route in routes if route.name == named and route.enabled]
    if not chosen:
        _exit(2, f"--route: no enabled route named {named!r}")
    return lambda _ref: chosen


@asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[Database]:
    db = open_database(settings.database_url)
    try:
        yield db
    finally:
        if db.read_engine is not db.engine:
            await db.read_engine.dispose()
        await db.engine.dispose()


async def _wake_workers(session: AsyncSession) -> None:
    # Workers LISTEN on PostgreSQL (delivered at commit, to every process); on SQLite they poll.
    # `deliveries.replay` and `retry` only notify when they insert, so say it once here.
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")))


async def _replay_refs(
    session: AsyncSession,
    refs: Sequence[EventRef],
    *,
    targets: Targets,
    dry_run: bool,
) -> int:
    """Queue the deliveries of `refs` again (or count what would be); how many."""
    if dry_run:
        # What `deliveries.replay` would queue: every target except an in-flight delivery.
        stored = await deliveries.deliveries_of(session, [ref.id for ref in refs])
        busy = {(row.event_id, row.route) for row in stored if row.status == "in_flight"}
        return sum((ref.id, r.name) not in busy for ref in refs for r in targets(ref))
    now = SystemClock().now()
    queued = 0
    for ref in refs:
        queued += await deliveries.replay(
            session, event_id=ref.id, job_id=ref.job_id, routes=targets(ref), now=now
        )
    if queued:
        await _wake_workers(session)
    return queued


async def _replay_one(
    session: AsyncSession, event_id: str, *, targets: Targets, dry_run: bool
) -> int | None:
    row = await events.get_event(session, event_id)
    if row is None:
        return None
    ref = EventRef(
        id=row.id,
        type=row.type,
        workspace=row.workspace,
        job_id=row.job_id,
        received_at=row.received_at,
    )
    return await _replay_refs(session, [ref], targets=targets, dry_run=dry_run)


async def _replay_batch(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    after: tuple[datetime, str] | None,
    targets: Targets,
    dry_run: bool,
) -> tuple[list[EventRef], int]:
    batch = await events.events_received(
        session, since=since, until=until, after=after, limit=REPLAY_BATCH
    )
    return batch, await _replay_refs(session, batch, targets=targets, dry_run=dry_run)


async def _replay_range(
    db: Database,
    *,
    since: datetime,
    until: datetime,
    targets: Targets,
    dry_run: bool,
    tally: _Tally,
    progress: Progress,
) -> None:
    """Replay [since, until) one transaction per batch, keyset by (received_at, id)."""
    run = db.read if dry_run else db.write
    while True:
        work = partial(
            _replay_batch,
            since=since,
            until=until,
            after=tally.last,
            targets=targets,
            dry_run=dry_run,
        )
        batch, queued = await run(work)
        if not batch:
            return
        tally.events += len(batch)
        tally.deliveries += queued
        tally.last = (batch[-1].received_at, batch[-1].id)
        progress.update(
            f"{tally.events} events, {tally.deliveries} deliveries, "
            f"at {tally.last[0]:%Y-%m-%dT%H:%M:%SZ}"
        )
        if len(batch) < REPLAY_BATCH:
            return


async def _replay(
    settings: Settings,
    args: argparse.Namespace,
    window: tuple[datetime, datetime] | None,
    targets: Targets,
    tally: _Tally,
    progress: Progress,
) -> bool:
    """Replay into `tally`; False when the one `--event` asked for is not stored."""
    async with _opened(settings) as db:
        if window is None:
            work = partial(_replay_one, event_id=args.event, targets=targets, dry_run=args.dry_run)
            queued = await (db.read if args.dry_run else db.write)(work)
            if queued is None:
                return False
            tally.events, tally.deliveries = 1, queued
            return True
        since, until = window
        await _replay_range(
            db,
            since=since,
            until=until,
            targets=targets,
            dry_run=args.dry_run,
            tally=tally,
            progress=progress,
        )
        return True


def _replay_window(args: argparse.Namespace) -> tuple[datetime, datetime] | None:
    """[since, until) for `--since`, None for `--event`; exits 2 on a bad or empty range."""
    since = _time_option("--since", args.since)
    until = _time_option("--until", args.until)
    if since is None:
        if until is not None:
            _exit(2, "--until: only with --since")
        return None
    # By default up to now: events arriving meanwhile get their deliveries anyway.
    until = until or SystemClock().now()
    if until <= since:
        _exit(2, "--until: must be later than --since")
    return since, until


def cmd_replay(args: argparse.Namespace) -> int:
    """Queue stored events' deliveries again, as `POST /admin/events/{id}/replay` does."""
    settings = _settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    window = _replay_window(args)
    targets = _replay_targets(_routes_or_exit(settings), args.route)
    tally = _Tally()
    progress = Progress("replay", sys.stderr)
    try:
        found = asyncio.run(_replay(settings, args, window, targets, tally, progress))
    except StoreUnavailable as exc:
        progress.abandon()
        resume = (
            f" ({tally.events} events done; to go on: --since {tally.last[0].isoformat()})"
            if tally.last is not None
            else ""
        )
        _exit(1, f"store unavailable: {exc}{resume}")
    if not found:
        _exit(1, f"no event {args.event!r}")
    if window is not None:
        progress.finish(f"{tally.events} events, {tally.deliveries} deliveries")
    if args.dry_run:
        print(f"would replay {tally.events} events, queue {tally.deliveries} deliveries")
    else:
        print(f"replayed {tally.events} events, queued {tally.deliveries} deliveries")
    return 0


async def _count_matching(session: AsyncSession, *, where: DeliveryFilter) -> int:
    count, cursor = 0, None
    while True:
        page = await deliveries.list_deliveries(
            session, where=where, limit=COUNT_PAGE, cursor=cursor
        )
        count += len(page.items)
        if page.next_key is None:
            return count
        cursor = page.next_key


async def _retry_and_wake(
    session: AsyncSession, *, where: DeliveryFilter, budgets: dict[str, int]
) -> int:
    count = await deliveries.retry(
        session, where=where, ids=None, budgets=budgets, now=SystemClock().now()
    )
    if count:
        await _wake_workers(session)
    return count


async def _retry_dead(
    settings: Settings, where: DeliveryFilter, budgets: dict[str, int], *, dry_run: bool
) -> int:
    async with _opened(settings) as db:
        if dry_run:
            return await db.read(partial(_count_matching, where=where))
        return await db.write(partial(_retry_and_wake, where=where, budgets=budgets))


def cmd_retry_dead(args: argparse.Namespace) -> int:
    """Make dead deliveries due again, as `POST /admin/deliveries/retry` (status dead) does."""
    settings = _settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    # A fresh budget per route as configured now; the admin API uses every route, enabled or not.
    budgets = {route.name: route.max_attempts for route in _routes_or_exit(settings)}
    where = DeliveryFilter(status="dead", route=args.route, job_id=args.job_id)
    try:
        count = asyncio.run(_retry_dead(settings, where, budgets, dry_run=args.dry_run))
    except StoreUnavailable as exc:
        _exit(1, f"store unavailable: {exc}")
    if args.dry_run:
        print(f"would retry {count} dead deliveries")
    else:
        print(f"retried {count} dead deliveries")
    return 0


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
    _add_requeue_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `llmtune-receiver` command."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
