"""`worker`: the dispatch worker and the job reconciler on their own, until SIGTERM (`--once`)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from prometheus_client import start_http_server

from service.bootstrap import Overrides, built_services, run_background
from service.commands.basics import fail, settings_or_exit
from service.commands.common import keys_usable, log, routes_usable, schema_current_or_explain
from service.config import Settings
from service.logs import configure_logging
from service.services import Services
from service.store.listen import listening


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the dispatch worker alone (scale it apart from the web servers)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    if not routes_usable(settings) or not keys_usable(settings):
        return 2
    if problem := schema_current_or_explain(settings):
        fail(2, problem)
    asyncio.run(_work(settings, once=args.once, metrics=(args.metrics_host, args.metrics_port)))
    return 0


async def _work(settings: Settings, *, once: bool, metrics: tuple[str, int | None]) -> None:
    async with built_services(settings, Overrides(), role="worker") as svc:
        host, port = metrics
        if port is not None and not once:
            # prometheus-client's own small HTTP server, in a daemon thread: the worker has no
            # web app, and a scrape must not wait behind the event loop.
            server, _ = start_http_server(port, addr=host, registry=svc.metrics.registry)
            log.info("worker_metrics_served", host=host, port=port)
            try:
                await _run(svc)
            finally:
                server.shutdown()
            return
        if once:
            made = await svc.worker.run_until_idle()
            log.info("worker_idle", attempts=made)
            return
        await _run(svc)


async def _run(svc: Services) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with listening(svc.db.engine, svc.notifier.notify) as listens:
        log.info("worker_started", listening=listens, routes=[r.name for r in svc.routes])
        await run_background(svc, stop)
    log.info("worker_stopped")
