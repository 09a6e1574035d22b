"""Time as a dependency: the service asks a `Clock` (and a `Timer` where it paces itself),
tests hand in a `FakeClock` (and a `FakeTimer`)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        """The machine's time, aware UTC."""
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        """The fake current time."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move time forward by `delta`."""
        self._now += delta


class Timer(Protocol):
    """Monotonic seconds and a way to wait them out, for code that paces itself."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never goes back."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds`."""
        ...


class SystemTimer:
    def monotonic(self) -> float:
        """The machine's monotonic clock."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running event loop."""
        await asyncio.sleep(seconds)


class FakeTimer:
    """A timer whose sleeps return at once and move its time on by what they asked for."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self.slept: list[float] = []

    def monotonic(self) -> float:
        """The fake monotonic time."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Record the sleep, advance the time, and let other tasks run once."""
        self.slept.append(seconds)
        self._now += seconds
        await asyncio.sleep(0)
