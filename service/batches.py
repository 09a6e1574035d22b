"""The loop behind both group-commit queues (ingest's writer, the worker's attempt recorder):
take whatever is queued, up to a limit, and hand it over as one batch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

STOP = object()  # put on a queue to end `flush_batches` once what came before it is flushed


async def flush_batches(
    queue: asyncio.Queue[Any], limit: int, flush: Callable[[list[Any]], Awaitable[None]]
) -> None:
    """Flush what is queued, at most `limit` at a time, without waiting for more, until `STOP`."""
    stopping = False
    while not stopping:
        first = await queue.get()
        if first is STOP:
            return
        batch = [first]
        while len(batch) < limit and not queue.empty():
            item = queue.get_nowait()
            if item is STOP:
                stopping = True  # flush what came before it, then stop
                break
            batch.append(item)
        await flush(batch)
