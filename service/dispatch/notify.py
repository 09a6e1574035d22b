"""Wake-up for the dispatch worker when ingest stores new deliveries, within one process.

Across processes PostgreSQL's LISTEN/NOTIFY carries the same signal (`store/listen.py`); the
worker's poll is the fallback for both.
"""

from __future__ import annotations

import asyncio


class Notifier:
    """A level-triggered signal: `notify` from the writer, `wait` in the worker."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """New work was committed."""
        self._event.set()

    async def wait(self) -> None:
        """Return once work was announced since the last return."""
        await self._event.wait()
        self._event.clear()
