"""The reconciler: asks LLMTune about jobs that have gone quiet, so a lost webhook never loses a
completion.

Jobs still open (`submitted`/`pending`/`running`, with an LLMTune id) that nothing has moved for
`JOB_POLL_AFTER` are polled with `GET /fine-tune/{jobId}`; a status that moves the job forward is
stored as a `poll` event through the one ingest service (same dedup, same routes as a webhook).
Polls back off while they find nothing new. Each poll is leased in the database first, so several
workers never poll one job at once.

An unsigned delivery to a job's callback URL is only a doorbell (`ring`): its body is never
trusted, but it makes the reconciler ask LLMTune's authenticated API about that job at once, at
most once every `DOORBELL_EVERY` per job, and what the API answers is what gets stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Literal

import structlog

from service.clock import Clock
from service.jobs.poll import Polled, event_for_poll, next_poll_delay, poll_body
from service.llmtune.client import LLMTuneClient
from service.llmtune.errors import LLMTuneError
from service.ports import EmitEvent, EmittedEvent
from service.store import jobs
from service.store.db import Database, StoreUnavailable
from service.store.jobs import PollDue

log = structlog.get_logger(__name__)

POLL_LEASE = timedelta(minutes=2)
MAX_POLL_INTERVAL = timedelta(hours=4)
POLLS_AT_ONCE = 8
DOORBELL_EVERY = timedelta(seconds=5)

# What a doorbell did: a poll started, or none (polled moments ago, not yet accepted by
# LLMTune, or already final).
Rang = Literal["polling", "not_due"]


class Reconciler:
    """Polls quiet jobs and turns what changed into events."""

    def __init__(
        self,
        db: Database,
        client: LLMTuneClient,
        emit: EmitEvent,
        *,
        clock: Clock,
        poll_after: timedelta,
    ) -> None:
        self._db = db
        self._client = client
        self._emit = emit
        self._clock = clock
        self._poll_after = poll_after
        self._doorbell_polls: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll what is due, then sleep a while, until `stop` is set."""
        pause = min(30.0, self._poll_after.total_seconds() / 4)
        while not stop.is_set():
            # A store failure is logged by the store; the next round tries again.
            with contextlib.suppress(StoreUnavailable):
                await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause)

    async def run_once(self) -> int:
        """Poll every job due now (a few at a time); how many were polled."""
        now = self._clock.now()
        due = await self._db.write(
            lambda session: jobs.claim_polls(
                session,
                now=now,
                quiet_since=now - self._poll_after,
                lease=POLL_LEASE,
                limit=POLLS_AT_ONCE,
            )
        )
        await asyncio.gather(*(self.poll(job) for job in due))
        return len(due)

    async def ring(self, job_id: str) -> Rang:
        """Poll job `job_id` now, in the background, unless a poll of it is not due; the
        caller (an unsigned callback) does not wait for LLMTune's answer."""
        now = self._clock.now()
        due = await self._db.write(
            lambda session: jobs.claim_doorbell_poll(
                session, job_id, now=now, every=DOORBELL_EVERY, lease=POLL_LEASE
            )
        )
        if due is None:
            return "not_due"
        task = asyncio.create_task(self._doorbell_poll(due))
        self._doorbell_polls.add(task)
        task.add_done_callback(self._doorbell_polls.discard)
        return "polling"

    async def _doorbell_poll(self, job: PollDue) -> None:
        try:
            await self.poll(job)
        except StoreUnavailable:
            # The lease runs out and the reconciler's own round polls the job again.
            log.warning("job_poll_unstored", job_id=job.id)

    async def aclose(self) -> None:
        """Cancel doorbell polls still running (their leases hand them back to the rounds)."""
        for task in list(self._doorbell_polls):
            task.cancel()
        await asyncio.gather(*self._doorbell_polls, return_exceptions=True)

    async def poll(self, job: PollDue) -> EmittedEvent | None:
        """Ask LLMTune about one job now; store the event its answer stands for, if any."""
        try:
            status = await self._client.get_fine_tune(job.llmtune_job_id)
        except LLMTuneError as exc:
            log.warning("job_poll_failed", job_id=job.id, status=exc.status, code=exc.code)
            await self._schedule(job, quiet=True)
            return None
        polled = Polled(
            job_id=job.llmtune_job_id,
            status=status.status,
            artifact=status.artifact,
            metrics=status.metrics,
            error=status.error,
        )
        event = event_for_poll(polled, job.status)
        accepted = None
        if event is not None:
            body = poll_body(polled, event, self._clock.now())
            accepted = await self._emit(body, source="poll")
            log.info(
                "job_poll_found", job_id=job.id, event_type=event, duplicate=accepted.duplicate
            )
        await self._schedule(job, quiet=event is None)
        return accepted

    async def _schedule(self, job: PollDue, *, quiet: bool) -> None:
        now = self._clock.now()
        failures = job.poll_failures + 1 if quiet else 0
        next_at = now + next_poll_delay(self._poll_after, failures, cap=MAX_POLL_INTERVAL)
        await self._db.write(
            lambda session: jobs.record_poll(
                session, job.id, now=now, next_at=next_at, failed=quiet
            )
        )
