"""`worker`: the dispatch worker and the job reconciler on their own, until SIGTERM (`--once`)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from service.bootstrap import Overrides, built_services, run_background
from service.commands.common import log, routes_usable, settings_or_exit
from service.config import Settings
from service.logs import configure_logging
from service.store.listen import listening


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the dispatch worker alone (scale it apart from the web servers)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    if not routes_usable(settings):
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
            await run_background(svc, stop)
        log.info("worker_stopped")
