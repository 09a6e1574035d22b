"""`create_fake_app`: a Starlette app imitating LLMTune, with its own `FakeLLMTune` state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from service.clock import Clock, SystemClock
from service.fake_llmtune.api import api_routes
from service.fake_llmtune.control import control_routes
from service.fake_llmtune.sender import Sleep
from service.fake_llmtune.state import FakeConfig, FakeLLMTune


def create_fake_app(
    config: FakeConfig, *, clock: Clock | None = None, sleep: Sleep | None = None
) -> Starlette:
    """The fake LLMTune app; its state is `app.state.fake` (see `fake_state`).

    `clock` decides when jobs are due; `sleep` waits between webhook retries and for
    `slow_seconds`. The lifespan runs the step ticker and the webhook sender.
    """
    fake = FakeLLMTune(config, clock=clock or SystemClock(), sleep=sleep or asyncio.sleep)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with fake.running():
            yield

    app = Starlette(routes=[*api_routes(), *control_routes()], lifespan=lifespan)
    app.state.fake = fake
    return app


def fake_state(app: Starlette) -> FakeLLMTune:
    """The `FakeLLMTune` behind an app made by `create_fake_app`."""
    fake: FakeLLMTune = app.state.fake
    return fake
