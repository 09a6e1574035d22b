"""Webhook delivery for the fake: signed POSTs in the background, retried with backoff.

`send` returns at once, so the API never waits on a receiver. Deliveries to one URL for one job
go out one after another (a retry finishes before that job's next webhook starts), which keeps
the order the switches chose; different jobs and URLs do not wait for each other.
Every attempt is recorded for `GET /_fake/webhooks`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import structlog

from service.clock import Clock
from service.fake_llmtune.jobs import iso_millis

Sleep = Callable[[float], Awaitable[None]]
log = structlog.get_logger("service.fake_llmtune")


@dataclass(frozen=True, slots=True)
class Webhook:
    """One signed webhook of one job, ready to post."""

    event: str
    job_id: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST of a webhook and how the receiver answered (`status`) or why it failed."""

    url: str
    event: str
    job_id: str
    attempt: int
    status: int | None
    error: str | None
    at: datetime

    def as_json(self) -> dict[str, Any]:
        """The attempt as `GET /_fake/webhooks` lists it."""
        return {
            "url": self.url,
            "event": self.event,
            "jobId": self.job_id,
            "attempt": self.attempt,
            "status": self.status,
            "error": self.error,
            "at": iso_millis(self.at),
        }


def retry_delay(attempt: int, *, base: float, attempts: int) -> float | None:
    """Seconds to wait after failed attempt number `attempt` (1-based); None: give up."""
    if attempt >= attempts:
        return None
    return base * 2.0 ** (attempt - 1)


class Sender:
    """Posts webhooks in background tasks; `running()` owns the HTTP client and the tasks."""

    def __init__(
        self, *, clock: Clock, sleep: Sleep, attempts: int, base_delay: float, timeout: float
    ) -> None:
        self.attempts: list[Attempt] = []
        self._clock = clock
        self._sleep = sleep
        self._max_attempts = attempts
        self._base_delay = base_delay
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._tails: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Open the HTTP client; on exit stop every delivery still waiting or retrying."""
        # trust_env=False: a proxy from the environment must not carry local test traffic away.
        async with httpx.AsyncClient(timeout=self._timeout, trust_env=False) as http:
            self._http = http
            try:
                yield
            finally:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                self._http = None

    def send(self, url: str, webhook: Webhook) -> None:
        """Deliver `webhook` to `url` after this job's earlier webhooks to `url`; returns now."""
        key = (url, webhook.job_id)
        task = asyncio.create_task(self._after(self._tails.get(key), url, webhook))
        self._tails[key] = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._forget(key, done))

    def _forget(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._tails.get(key) is task:
            del self._tails[key]

    async def idle(self) -> None:
        """Wait until no delivery is in flight or waiting to be retried."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _after(self, previous: asyncio.Task[None] | None, url: str, hook: Webhook) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        attempt = 1
        while not await self._attempt(url, hook, attempt):
            delay = retry_delay(attempt, base=self._base_delay, attempts=self._max_attempts)
            if delay is None:
                log.warning("fake_webhook_gave_up", url=url, webhook_event=hook.event)
                return
            await self._sleep(delay)
            attempt += 1

    async def _attempt(self, url: str, hook: Webhook, attempt: int) -> bool:
        """POST once and record it; True on a 2xx answer."""
        if self._http is None:
            raise RuntimeError("Sender.send outside Sender.running()")
        status: int | None = None
        error: str | None = None
        try:
            response = await self._http.post(url, content=hook.body, headers=hook.headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        else:
            status = response.status_code
        self.attempts.append(
            Attempt(url, hook.event, hook.job_id, attempt, status, error, self._clock.now())
        )
        log.info(
            "fake_webhook_attempt",
            url=url,
            webhook_event=hook.event,
            job_id=hook.job_id,
            attempt=attempt,
            status=status,
            error=error,
        )
        return status is not None and 200 <= status < 300
