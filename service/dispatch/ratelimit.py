"""Per-route rate limiting for the dispatch worker, within one process."""

from __future__ import annotations

import asyncio

from service.clock import SystemTimer, Timer


class RateLimiter:
    """At most `per_second` starts per second, spaced evenly (in this process)."""

    def __init__(self, per_second: float, *, timer: Timer | None = None) -> None:
        self._interval = 1.0 / per_second
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._timer = timer or SystemTimer()

    async def wait(self) -> None:
        """Return when the next start is allowed."""
        async with self._lock:
            now = self._timer.monotonic()
            if self._next > now:
                await self._timer.sleep(self._next - now)
            self._next = max(now, self._next) + self._interval
