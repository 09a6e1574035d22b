"""Waiting for state that other tasks, threads or processes change: poll until it holds.

Every test that waits uses these, so a slow machine fails them with one kind of message naming
what did not happen, never with a bare timeout.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import pytest

Condition = Callable[[], bool | Awaitable[bool]]


async def until(
    condition: Condition, within: float = 20.0, what: str = "the condition", step: float = 0.05
) -> float:
    """Poll `condition` (sync or async) until it holds; the seconds that took. Fails the test,
    naming `what`, after `within` seconds."""
    started = time.monotonic()
    while True:
        outcome = condition()
        if await outcome if inspect.isawaitable(outcome) else outcome:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within:g} s: {what}", pytrace=False)
        await asyncio.sleep(step)


def until_sync(
    condition: Callable[[], bool], within: float = 20.0, what: str = "the condition"
) -> float:
    """`until` for tests without an event loop (they drive servers over blocking HTTP)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within:g} s: {what}", pytrace=False)
        time.sleep(0.1)
    return time.monotonic() - started
