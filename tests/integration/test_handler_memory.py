"""The handlers' durable memory on SQLite and PostgreSQL, and the Slack thread it keeps across
restarts and worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.clock import FakeClock, SystemClock
from service.handlers.base import HandlerDeps, Ok, Retry
from service.handlers.outbound import Outbound
from service.store.db import open_database
from service.store.memory import StoredMemory
from tests.helpers import join_sqlite_threads, single_engine_database
from tests.integration.test_slack_handler import api_reply, bot, delivery, posted
from tests.sinks import HttpSink, http_sink


@pytest.fixture
def memory(engine: AsyncEngine) -> StoredMemory:
    return StoredMemory(
        single_engine_database(engine), FakeClock(datetime(2025, 11, 8, tzinfo=UTC))
    )


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with http_sink() as server:
        yield server


async def test_first_value_kept_wins(memory: StoredMemory) -> None:
    """Nothing is recalled before a value is kept; a second value does not replace the first."""
    assert await memory.recall("slack-thread:r", "job-1") is None
    assert await memory.remember("slack-thread:r", "job-1", "1.1") == "1.1"
    assert await memory.remember("slack-thread:r", "job-1", "9.9") == "1.1"
    assert await memory.recall("slack-thread:r", "job-1") == "1.1"
    assert await memory.recall("slack-thread:other", "job-1") is None


async def test_slack_thread_survives_a_restart(memory: StoredMemory, sink: HttpSink) -> None:
    """A second handler (a restarted or another worker) replies in the thread the first opened."""
    sink.script.extend([api_reply(ok=True, ts="1.1"), api_reply(ok=True, ts="2.2")])
    async with httpx.AsyncClient() as http, aclosing(Outbound()) as outbound:
        deps = HandlerDeps(
            http=http,
            clock=SystemClock(),
            public_url="https://receiver.test",
            memory=memory,
            outbound=outbound,
        )
        first, second = bot(sink, deps), bot(sink, deps)
        assert await first.handle(delivery("job-r", number=1)) == Ok("ts 1.1")
        completed = delivery("job-r", number=2, type="training.completed")
        assert await second.handle(completed) == Ok("ts 2.2")
    assert [posted(sink, i).get("thread_ts") for i in range(2)] == [None, "1.1"]


async def test_unreachable_memory_means_retry(sink: HttpSink, tmp_path: Path) -> None:
    """When the memory cannot be read the post waits (Retry) rather than leave the thread."""
    db = open_database(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db")
    try:
        async with httpx.AsyncClient() as http, aclosing(Outbound()) as outbound:
            deps = HandlerDeps(
                http=http,
                clock=SystemClock(),
                public_url="https://receiver.test",
                memory=StoredMemory(db, SystemClock()),
                outbound=outbound,
            )
            outcome = await bot(sink, deps).handle(delivery("job-x"))
    finally:
        await db.aclose()
        await asyncio.to_thread(join_sqlite_threads)
    assert isinstance(outcome, Retry)
    assert "thread memory unavailable" in outcome.error
    assert sink.received == []
