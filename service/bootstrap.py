"""Composition: everything the service runs on, built from Settings plus any overrides.

The web app's lifespan and the `worker` command both build their parts here, so the two can
never be wired differently. Nothing here starts work; the callers decide what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from service.admin_tokens import parse_admin_tokens
from service.clock import Clock, SystemClock
from service.config import Settings
from service.crypto.sealing import Keyring
from service.dispatch.notify import Notifier
from service.dispatch.reconciler import Reconciler
from service.dispatch.routes_file import RoutesConfig, load_config
from service.dispatch.routing import Route
from service.dispatch.worker import Worker, WorkerConfig
from service.events import DEFAULT_WORKSPACE
from service.handlers.base import EmitEvent, HandlerDeps, HandlerType
from service.handlers.registry import available, build_handlers
from service.ingest import Ingest
from service.llmtune.client import LLMTuneClient
from service.metrics import Metrics
from service.services import Services
from service.store.db import Database, StoreUnavailable, make_engine, open_database
from service.store.inference_runs import StoredRuns
from service.store.keys import check_keys
from service.store.memory import StoredMemory
from service.store.migrate import heads, known_revisions
from service.store.rejections_writer import RejectionLog
from service.store.sealing import Sealer
from service.store.writer import IngestWriter
from service.submissions import Submissions
from service.throttle import Throttle
from service.tracing import NO_TRACING, OtelTracing, Tracer, otlp_tracing
from service.webhooks.verify import SigningKey, signing_keys

log = structlog.get_logger(__name__)
HANDLER_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# An inference answer can take longer than a forward; the worker's attempt timeout still bounds it.
LLMTUNE_TIMEOUT = httpx.Timeout(25.0, connect=5.0)


@dataclass(frozen=True, slots=True)
class Overrides:
    """Parts a test (or an embedding program) supplies instead of the defaults."""

    engine: AsyncEngine | None = None
    clock: Clock | None = None
    writer: IngestWriter | None = None
    routes: tuple[Route, ...] | None = None
    handler_types: Mapping[str, HandlerType] | None = None
    worker: WorkerConfig | None = None
    tracing: OtelTracing | None = None


def tracing_for(settings: Settings, overrides: Overrides) -> OtelTracing | None:
    """The tracing given, else OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, else
    None (and nothing of OpenTelemetry is imported)."""
    if overrides.tracing is not None:
        return overrides.tracing
    if settings.otel_exporter_otlp_endpoint:
        return otlp_tracing(settings.otel_service_name)
    return None


def _warn_about_secrets(settings: Settings) -> None:
    if settings.webhook_allow_unsigned:
        log.warning(
            "unsigned_webhooks_allowed",
            message="WEBHOOK_ALLOW_UNSIGNED is on: unsigned deliveries are stored (dev only)",
        )
    elif not settings.webhook_secrets:
        log.warning(
            "no_webhook_secret",
            message="WEBHOOK_SECRETS is empty: every webhook will be refused with 401",
        )


def worker_config(settings: Settings) -> WorkerConfig:
    """The worker's knobs from settings. An attempt must end well before its lease does, or a
    second worker would start the same delivery while the first is still at it."""
    lease = settings.worker_lease_seconds
    return WorkerConfig(
        concurrency=settings.worker_concurrency,
        poll_seconds=settings.worker_poll_seconds,
        lease=timedelta(seconds=lease),
        attempt_timeout_seconds=min(30.0, lease / 2),
    )


def configured_routes(settings: Settings, overrides: Overrides) -> RoutesConfig:
    """Routes and workspaces: overridden, from the routes file, or the default `log` route."""
    config = load_config(settings.routes_file, os.environ)
    if overrides.routes is not None:
        return RoutesConfig(overrides.routes, config.workspaces)
    return config


def signing_keys_by_workspace(
    settings: Settings, config: RoutesConfig
) -> dict[str, tuple[SigningKey, ...]]:
    """Each workspace's key readings: WEBHOOK_SECRETS for the default one."""
    keys = {
        DEFAULT_WORKSPACE: signing_keys([s.get_secret_value() for s in settings.webhook_secrets])
    }
    for workspace in config.workspaces:
        keys[workspace.name] = signing_keys(workspace.secrets)
    return keys


async def run_background(svc: Services, stop: asyncio.Event) -> None:
    """The dispatch worker and, when jobs are on, the reconciler, until `stop` is set."""
    work = [svc.worker.run(stop)]
    if svc.reconciler is not None:
        work.append(svc.reconciler.run(stop))
    await asyncio.gather(*work)


def llmtune_client(settings: Settings, http: httpx.AsyncClient) -> LLMTuneClient | None:
    """The LLMTune API client, or None when no API key is set (jobs and inference are off)."""
    if settings.llmtune_api_key is None:
        return None
    return LLMTuneClient(
        http,
        base_url=settings.llmtune_api_url,
        api_key=settings.llmtune_api_key.get_secret_value(),
    )


def _emitter(ingest: Ingest) -> EmitEvent:
    """Internal events (`inference.completed`) go through the one ingest service."""

    async def emit(payload: Mapping[str, Any]) -> str:
        accepted = await ingest.accept(orjson.dumps(payload), [], source="internal", trusted=True)
        return accepted.event_id

    return emit


async def check_stored_keys(db: Database, keyring: Keyring | None, clock: Clock) -> None:
    """Refuse keys that cannot open the stored data, and register the current one (see
    `store/keys.py`). With encryption on, an unreachable store refuses the start: nothing may be
    sealed under a key that is not registered."""
    try:
        await db.write(lambda session: check_keys(session, keyring, now=clock.now()))
    except StoreUnavailable:
        if keyring is not None:
            raise
        log.warning("encryption_key_check_skipped", reason="the store is unavailable")


@asynccontextmanager
async def built_services(settings: Settings, overrides: Overrides) -> AsyncIterator[Services]:
    """Build every part, yield them, and close what was opened here on the way out.

    Raises `RoutesError`/`RouteError` (one line naming the route) for an unusable routes file.
    """
    _warn_about_secrets(settings)
    config = configured_routes(settings, overrides)
    routes = config.routes
    engine = overrides.engine
    if engine is None and not settings.is_sqlite:
        # One connection per in-flight attempt (its finish transaction), plus LISTEN, the claim
        # loop and queue stats; a smaller pool churns overflow connections and can time out.
        engine = make_engine(settings.database_url, pool_size=settings.worker_concurrency + 3)
    keyring = settings.keyring()
    db = open_database(settings.database_url, engine=engine, sealer=Sealer(keyring))
    http = httpx.AsyncClient(timeout=HANDLER_TIMEOUT, follow_redirects=False)
    llmtune_http = httpx.AsyncClient(timeout=LLMTUNE_TIMEOUT, follow_redirects=False)
    tracing = tracing_for(settings, overrides)
    tracer: Tracer = NO_TRACING
    if tracing is not None:
        tracer = tracing
        for traced in {db.engine, db.read_engine}:
            tracing.instrument_engine(traced)
        tracing.instrument_client(http)
        tracing.instrument_client(llmtune_http)
    try:
        clock = overrides.clock or SystemClock()
        await check_stored_keys(db, keyring, clock)
        metrics = Metrics()
        notifier = Notifier()
        writer = overrides.writer or IngestWriter(
            db,
            routes,
            on_commit=notifier.notify,
            on_batch=metrics.ingest_batch_events.observe,
            queue_limit=settings.ingest_queue_limit,
            batch_limit=settings.ingest_batch_limit,
            tracer=tracer,
        )
        ingest = Ingest(
            writer,
            keys=signing_keys_by_workspace(settings, config),
            allow_unsigned=settings.webhook_allow_unsigned,
            metrics=metrics,
            clock=clock,
            tracer=tracer,
        )
        llmtune = llmtune_client(settings, llmtune_http)
        handlers = build_handlers(
            routes,
            HandlerDeps(
                http=http,
                clock=clock,
                public_url=settings.public_url.rstrip("/"),
                memory=StoredMemory(db, clock),
                llmtune=llmtune,
                runs=StoredRuns(db, clock),
                emit=_emitter(ingest),
            ),
            overrides.handler_types if overrides.handler_types is not None else available(),
        )
        worker = Worker(
            db,
            routes={route.name: route for route in routes},
            handlers=handlers,
            ingest=ingest,
            metrics=metrics,
            clock=clock,
            notifier=notifier,
            config=overrides.worker or worker_config(settings),
            tracer=tracer,
        )
        reconciler = (
            None
            if llmtune is None
            else Reconciler(
                db,
                llmtune,
                ingest,
                clock=clock,
                poll_after=timedelta(seconds=settings.job_poll_after),
            )
        )
        # A writer passed in is run (or not) by whoever built it.
        running = writer.running() if overrides.writer is None else contextlib.nullcontext()
        rejections = RejectionLog(db, clock)
        async with running, rejections.running():
            try:
                yield Services(
                    settings=settings,
                    db=db,
                    ingest=ingest,
                    worker=worker,
                    notifier=notifier,
                    routes=routes,
                    admin_tokens=parse_admin_tokens(
                        [token.get_secret_value() for token in settings.admin_tokens]
                    ),
                    metrics=metrics,
                    clock=clock,
                    schema_heads=heads(),
                    schema_known=known_revisions(),
                    submissions=Submissions(
                        db, llmtune, clock=clock, public_url=settings.public_url
                    ),
                    reconciler=reconciler,
                    rejections=rejections,
                    auth_throttle=Throttle(),
                )
            finally:
                if reconciler is not None:
                    await reconciler.aclose()
    finally:
        await http.aclose()
        await llmtune_http.aclose()
        if tracing is not None and overrides.tracing is None:
            tracing.shutdown()  # made here, so ended here (spans buffered so far are exported)
        if db.read_engine is not db.engine:
            await db.read_engine.dispose()
        if overrides.engine is None:
            await db.engine.dispose()
