"""Per-route rate limiting for the dispatch worker, within one process."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """At most `per_second` starts per second, spaced evenly (in this process)."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Return when the next start is allowed."""
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self._interval
