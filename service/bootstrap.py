"""Composition: everything the service runs on, built from Settings plus any overrides.

The web app's lifespan, the `worker` command and the tests (`tests/wiring.py`) build their parts
here, so they can never be wired differently. One `AsyncExitStack` owns every resource opened
(engines, HTTP clients, tracing, the writer and rejection-log tasks, the background worker) and
closes them in reverse order, also when a later part fails to build.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from service.admin_tokens import parse_admin_tokens
from service.clock import Clock, SystemClock, Timer
from service.config import Settings
from service.crypto.sealing import Keyring
from service.dispatch.notify import Notifier
from service.dispatch.replays import Replays
from service.dispatch.routes_file import RoutesConfig, load_config
from service.dispatch.worker import Worker, WorkerConfig
from service.events import DEFAULT_WORKSPACE
from service.handlers.base import Handler, HandlerDeps, HandlerType, InferenceDeps
from service.handlers.outbound import Outbound
from service.handlers.registry import available, build_handlers
from service.ingest import Ingest
from service.jobs.reconcile import Reconciler
from service.jobs.submit import Submissions
from service.llmtune.client import LLMTuneClient
from service.metrics import Metrics
from service.routing import Subscription
from service.services import Services
from service.store.db import Database, StoreUnavailable, open_database
from service.store.inference_runs import StoredRuns
from service.store.keys import check_keys
from service.store.listen import listening
from service.store.memory import StoredMemory
from service.store.migrate import heads, known_revisions
from service.store.rejections_writer import RejectionLog
from service.store.sealing import Sealer
from service.store.writer import IngestWriter
from service.throttle import Throttle
from service.tracing import NO_TRACING, OtelTracing, Tracer, otlp_tracing
from service.webhooks.verify import SigningKey, signing_keys

log = structlog.get_logger(__name__)
# What a process built here serves: webhooks and the API ("web"), or deliveries only ("worker").
Role = Literal["web", "worker"]
HANDLER_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# An inference answer can take longer than a forward; the worker's attempt timeout still bounds it.
LLMTUNE_TIMEOUT = httpx.Timeout(25.0, connect=5.0)


@dataclass(frozen=True, slots=True)
class Overrides:
    """Parts a test (or an embedding program) supplies instead of the defaults."""

    engine: AsyncEngine | None = None
    clock: Clock | None = None
    writer: IngestWriter | None = None
    routes: tuple[Subscription, ...] | None = None
    handler_types: Mapping[str, HandlerType] | None = None
    worker: WorkerConfig | None = None
    tracing: OtelTracing | None = None
    # Ready-made handlers by route name, instead of building them from the route options.
    handlers: Mapping[str, Handler] | None = None
    rng: random.Random | None = None  # the worker's retry jitter
    notifier: Notifier | None = None  # the worker's wake-up signal
    timer: Timer | None = None  # the routes' rate limiters' time and sleep


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
    config = load_config(settings.routes_file, os.environ, settings.custom_event_types)
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


@dataclass(frozen=True, slots=True)
class Core:
    """What every part below is built on: the store, the outbound clients, time and telemetry."""

    settings: Settings
    db: Database
    http: httpx.AsyncClient
    outbound: Outbound  # the `http` and `slack` handlers' pooled, address-checked POSTs
    llmtune: LLMTuneClient | None  # None when no API key is set (jobs and inference are off)
    clock: Clock
    metrics: Metrics
    notifier: Notifier
    tracer: Tracer


async def open_core(
    settings: Settings, overrides: Overrides, tracing: OtelTracing | None, stack: AsyncExitStack
) -> Core:
    """Open the store and the HTTP clients, each closed by `stack`; check the stored keys."""
    keyring = settings.keyring()
    # One connection per in-flight attempt (its finish transaction), plus LISTEN, the claim
    # loop and queue stats; a smaller pool churns overflow connections and can time out.
    db = open_database(
        settings.database_url,
        engine=overrides.engine,
        sealer=Sealer(keyring),
        pool_size=settings.worker_concurrency + 3,
    )
    stack.push_async_callback(db.aclose)
    http = await stack.enter_async_context(
        httpx.AsyncClient(timeout=HANDLER_TIMEOUT, follow_redirects=False)
    )
    llmtune_http = await stack.enter_async_context(
        httpx.AsyncClient(timeout=LLMTUNE_TIMEOUT, follow_redirects=False)
    )
    outbound = Outbound(tracing=tracing)
    stack.push_async_callback(outbound.aclose)
    tracer: Tracer = NO_TRACING
    if tracing is not None:
        tracer = tracing
        for traced in {db.engine, db.read_engine}:
            tracing.instrument_engine(traced)
        tracing.instrument_client(http)
        tracing.instrument_client(llmtune_http)
    clock = overrides.clock or SystemClock()
    await check_stored_keys(db, keyring, clock)
    return Core(
        settings=settings,
        db=db,
        http=http,
        outbound=outbound,
        llmtune=llmtune_client(settings, llmtune_http),
        clock=clock,
        metrics=Metrics(),
        notifier=overrides.notifier or Notifier(),
        tracer=tracer,
    )


async def build_ingest(
    core: Core, config: RoutesConfig, overrides: Overrides, stack: AsyncExitStack
) -> Ingest:
    """The one ingest service; its writer's flusher runs until `stack` closes."""
    settings = core.settings
    writer = overrides.writer
    if writer is None:
        writer = IngestWriter(
            core.db,
            on_commit=core.notifier.notify,
            on_batch=core.metrics.ingest_batch_events.observe,
            queue_limit=settings.ingest_queue_limit,
            batch_limit=settings.ingest_batch_limit,
            tracer=core.tracer,
        )
        await stack.enter_async_context(writer.running())
    # (A writer passed in is run, or not, by whoever built it.)
    return Ingest(
        writer,
        keys=signing_keys_by_workspace(settings, config),
        allow_unsigned=settings.webhook_allow_unsigned,
        metrics=core.metrics,
        clock=core.clock,
        routes=config.routes,
        tracer=core.tracer,
    )


def route_handlers(
    core: Core, routes: tuple[Subscription, ...], ingest: Ingest, overrides: Overrides
) -> dict[str, Handler]:
    """A handler per enabled route, each given what it asks for; `RouteError` if one is unusable."""
    if overrides.handlers is not None:
        return dict(overrides.handlers)
    deps = HandlerDeps(
        http=core.http,
        clock=core.clock,
        public_url=core.settings.public_url.rstrip("/"),
        outbound=core.outbound,
        memory=StoredMemory(core.db, core.clock),
        inference=None
        if core.llmtune is None
        else InferenceDeps(core.llmtune, StoredRuns(core.db, core.clock), ingest.emit),
    )
    types = overrides.handler_types if overrides.handler_types is not None else available()
    return build_handlers(routes, deps, types)


def build_worker(
    core: Core, routes: tuple[Subscription, ...], ingest: Ingest, overrides: Overrides
) -> Worker:
    """The dispatch worker over the configured routes."""
    return Worker(
        core.db,
        routes={route.name: route for route in routes},
        handlers=route_handlers(core, routes, ingest, overrides),
        emit=ingest.emit,
        metrics=core.metrics,
        clock=core.clock,
        notifier=core.notifier,
        config=overrides.worker or worker_config(core.settings),
        rng=overrides.rng,
        timer=overrides.timer,
        tracer=core.tracer,
    )


def build_reconciler(core: Core, ingest: Ingest, stack: AsyncExitStack) -> Reconciler | None:
    """The job poller, or None when no LLMTune API key is set; its doorbell polls end with
    `stack`."""
    if core.llmtune is None:
        return None
    reconciler = Reconciler(
        core.db,
        core.llmtune,
        ingest.emit,
        clock=core.clock,
        poll_after=timedelta(seconds=core.settings.job_poll_after),
    )
    stack.push_async_callback(reconciler.aclose)
    return reconciler


@asynccontextmanager
async def built_services(
    settings: Settings,
    overrides: Overrides,
    *,
    role: Role = "web",
    tracing: OtelTracing | None = None,
) -> AsyncIterator[Services]:
    """Build every part, yield them, and close everything opened here on the way out, in
    reverse order, through one exit stack.

    `role="web"` also records refused webhooks (the rejection log's writer task) and, with
    RUN_WORKER on, runs the worker beside the server; `role="worker"` starts no task (the
    `worker` command runs the worker in the foreground). `tracing`, when given, was made by the
    caller for this run and is shut down here; an override's tracing is its owner's.

    Raises `RoutesError`/`RouteError` (one line naming the route) for an unusable routes file.
    """
    async with AsyncExitStack() as stack:
        tracing = tracing or tracing_for(settings, overrides)
        if tracing is not None and tracing is not overrides.tracing:
            stack.callback(tracing.shutdown)  # ended last: spans buffered so far are exported
        _warn_about_secrets(settings)
        config = configured_routes(settings, overrides)
        core = await open_core(settings, overrides, tracing, stack)
        ingest = await build_ingest(core, config, overrides, stack)
        rejections = RejectionLog(core.db, core.clock)
        if role == "web":
            await stack.enter_async_context(rejections.running())
        svc = Services(
            settings=settings,
            db=core.db,
            ingest=ingest,
            worker=build_worker(core, config.routes, ingest, overrides),
            notifier=core.notifier,
            routes=config.routes,
            admin_tokens=parse_admin_tokens(
                [token.get_secret_value() for token in settings.admin_tokens]
            ),
            metrics=core.metrics,
            clock=core.clock,
            schema_heads=heads(),
            schema_known=known_revisions(),
            submissions=Submissions(
                core.db, core.llmtune, clock=core.clock, public_url=settings.public_url
            ),
            reconciler=build_reconciler(core, ingest, stack),
            rejections=rejections,
            auth_throttle=Throttle(),
            replays=Replays(
                core.db, config.routes, clock=core.clock, on_queued=core.notifier.notify
            ),
        )
        if role == "web" and settings.run_worker:
            await stack.enter_async_context(running_in_background(svc))
        yield svc


@asynccontextmanager
async def running_in_background(svc: Services) -> AsyncIterator[None]:
    """The dispatch worker (and the job reconciler) as a task, stopped when the block ends."""
    stop = asyncio.Event()
    async with listening(svc.db.engine, svc.notifier.notify):
        task = asyncio.create_task(run_background(svc, stop), name="dispatch")
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task
