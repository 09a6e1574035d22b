"""`bootstrap_for_tests`: the service wired as the app wires it, on the test's engine.

Tests that need ingest, the writer and the worker together build them here instead of by hand,
so a test can never be wired differently from the service (cosmicpython's `bootstrap_test_app`).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.bootstrap import Overrides, built_services
from service.clock import Clock, Timer
from service.dispatch.notify import Notifier
from service.dispatch.worker import WorkerConfig
from service.handlers.base import Handler
from service.routing import Subscription
from service.services import Services
from tests.helpers import make_settings


@asynccontextmanager
async def bootstrap_for_tests(
    engine: AsyncEngine,
    *,
    routes: Sequence[Subscription],
    handlers: Mapping[str, Handler] | None = None,
    clock: Clock | None = None,
    worker: WorkerConfig | None = None,
    rng: random.Random | None = None,
    notifier: Notifier | None = None,
    timer: Timer | None = None,
    **settings: Any,
) -> AsyncIterator[Services]:
    """Every part of the service on `engine` (which the test keeps), with `handlers` by route
    name when given. Built as the `worker` process is: no task runs but the ingest writer, so
    the test drives the worker itself (`run_until_idle`, `run_once`)."""
    url = engine.url.render_as_string(hide_password=False)
    overrides = Overrides(
        engine=engine,
        clock=clock,
        routes=tuple(routes),
        handlers=handlers,
        # The worker's own defaults, not the settings' (a short attempt timeout, no polling).
        worker=worker or WorkerConfig(),
        rng=rng,
        notifier=notifier,
        timer=timer,
    )
    async with built_services(make_settings(url, **settings), overrides, role="worker") as svc:
        yield svc
