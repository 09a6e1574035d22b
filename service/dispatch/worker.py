"""The dispatch worker: claim due deliveries, run their handlers, record every attempt, and
reschedule (`policy.py`) or bury them. Runs inside `serve` or as `llmtune-receiver worker`.

It wakes at once when ingest stores new work (an in-process signal, and PostgreSQL's
LISTEN/NOTIFY across processes) and polls as a fallback. At most `concurrency` handler calls
run at a time, each route at most `rate_limit` per second (per process). Claims run up to
`concurrency` deliveries ahead of the handler calls, so a deep queue is claimed in batches; a
claim whose lease could run out during its attempt by the time its turn comes is given back.
On stop, claims not yet started are given back at once, in-flight attempts may finish for a
grace period, then the rest are given back too. Finished attempts are recorded many at a time
(`results.py`); a delivery keeps its lease until its result is committed. A delivery that goes
`dead` is announced as an internal `delivery.dead` event through the ingest service.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import structlog
from prometheus_client import Counter, Histogram

from service.clock import Clock, Timer
from service.dispatch.dead import DEAD_EVENT, dead_event_body
from service.dispatch.notify import Notifier
from service.dispatch.policy import Decision, attempt_outcome, decide
from service.dispatch.ratelimit import RateLimiter
from service.dispatch.results import AttemptRecorder
from service.dispatch.turns import Turn
from service.handlers.base import Delivery, Fail, Handler, Ok, Outcome, Retry
from service.metrics import Metrics
from service.ports import EmitEvent
from service.routing import Subscription
from service.store import outbox
from service.store.db import Database, StoreUnavailable
from service.store.errors import SealedDataUnreadable
from service.store.outbox import Claimed, Finish
from service.store.sealing import Sealer, open_body
from service.tracing import NO_TRACING, Attributes, Tracer
from service.webhooks.normalize import normalize

log = structlog.get_logger("service.dispatch")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How hard the worker works."""

    concurrency: int = 16
    poll_seconds: float = 1.0
    lease: timedelta = timedelta(seconds=60)
    attempt_timeout_seconds: float = 30.0
    grace_seconds: float = 10.0
    stats_every_seconds: float = 5.0


class Worker:
    """Delivers stored events to their routes' handlers."""

    def __init__(
        self,
        db: Database,
        *,
        routes: Mapping[str, Subscription],
        handlers: Mapping[str, Handler],
        emit: EmitEvent | None,
        metrics: Metrics,
        clock: Clock,
        notifier: Notifier,
        config: WorkerConfig | None = None,
        rng: random.Random | None = None,
        tracer: Tracer = NO_TRACING,
        timer: Timer | None = None,
    ) -> None:
        self._tracer = tracer
        self._db = db
        self._routes = routes
        self._handlers = handlers
        self._emit = emit
        self._metrics = metrics
        self._clock = clock
        self._notifier = notifier
        self._config = config or WorkerConfig()
        self._rng = rng or random.Random()
        self._limiters = {
            name: RateLimiter(route.rate_limit, timer=timer)
            for name, route in routes.items()
            if route.rate_limit is not None
        }
        self._recorder = AttemptRecorder(db, clock)
        self._running: dict[asyncio.Task[None], Claimed] = {}
        # Attempts whose result is with the recorder: on stop they are not given back.
        self._recorded: set[tuple[str, int]] = set()
        # Attempts that have their handler slot: on stop, the others are given back at once.
        self._started: set[tuple[str, int]] = set()
        self._slots = asyncio.Semaphore(self._config.concurrency)
        self._room = asyncio.Event()  # set when the claims ahead fell to `concurrency` or fewer
        self._held_limit = 2 * self._config.concurrency
        self._counted: dict[tuple[str, str], Counter] = {}
        self._timed: dict[str, Histogram] = {}
        # A claimed delivery must still have this much lease when its turn comes.
        self._lease_needed = timedelta(seconds=self._config.attempt_timeout_seconds)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then drain (see the module docstring)."""
        abandoned: list[Claimed] = []
        try:
            async with self._recorder.running():
                try:
                    await self._work(stop)
                finally:
                    abandoned = await self._stop_attempts()
        finally:
            # After the recorder wrote its queue: only attempts without a result are given back.
            await self._release(abandoned)

    async def _work(self, stop: asyncio.Event) -> None:
        last_stats = 0.0
        while not stop.is_set():
            asked = self._room_to_claim()
            claimed = await self._claim_some()
            if time.monotonic() - last_stats >= self._config.stats_every_seconds:
                await self._record_queue_stats()
                last_stats = time.monotonic()
            if len(self._running) > self._config.concurrency:
                await self._idle(stop, self._room)  # enough claimed ahead: wait for room
            elif len(claimed) < asked or not claimed:
                # Fewer than asked for: the queue is empty now. Wait for a notification (level-
                # triggered: one that came during the claim is not lost), not another claim.
                await self._idle(stop, self._notifier)

    async def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Claim and finish work until nothing is due (tests, `worker --once`); attempts made."""
        made = 0
        async with self._recorder.running():
            for _ in range(max_rounds):
                claimed = await self._claim_some()
                if not claimed and not self._running:
                    break
                if self._running:
                    await asyncio.wait(set(self._running), return_when=asyncio.FIRST_COMPLETED)
                made += len(claimed)
            if self._running:  # rounds ran out: let the attempts under way record their results
                await asyncio.wait(set(self._running))
        return made

    def _room_to_claim(self) -> int:
        """How many to claim now: none while more than `concurrency` are claimed ahead, else
        enough to hold twice `concurrency`."""
        if len(self._running) > self._config.concurrency:
            return 0
        return self._held_limit - len(self._running)

    async def _claim_some(self) -> list[Claimed]:
        limit = self._room_to_claim()
        if limit <= 0:
            return []
        now, lease = self._clock.now(), self._config.lease
        self._room.clear()
        try:
            # One statement on PostgreSQL, so no transaction of its own (two round trips fewer).
            claimed = await self._db.write_one_statement(
                lambda conn: outbox.claim(conn, now=now, lease=lease, limit=limit)
            )
        except StoreUnavailable:
            return []  # logged by the store; the next round tries again
        for item in claimed:
            task = asyncio.create_task(self._attempt(item, now))
            self._running[task] = item
            task.add_done_callback(self._finished)
        return claimed

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task)
        if len(self._running) <= self._config.concurrency:
            self._room.set()

    async def _idle(self, stop: asyncio.Event, signal: Notifier | asyncio.Event) -> None:
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(signal.wait())}
        try:
            await asyncio.wait(
                waiters, timeout=self._config.poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _stop_attempts(self) -> list[Claimed]:
        """Cancel the attempts not yet started, let running ones finish for the grace period,
        cancel the rest; those that had no result yet (still in their handler), to be given
        back."""
        queued = {
            task: item for task, item in self._running.items() if _key(item) not in self._started
        }
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
        if not self._running:
            return list(queued.values())
        pending = set(self._running)
        _, unfinished = await asyncio.wait(pending, timeout=self._config.grace_seconds)
        # Taken before the cancel: a cancelled attempt that had handed its result over stops
        # waiting for it, and the recorder still writes it.
        cut_short = [self._running[task] for task in unfinished if task in self._running]
        abandoned = [item for item in cut_short if _key(item) not in self._recorded]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        return [*queued.values(), *abandoned]

    async def _release(self, abandoned: list[Claimed]) -> None:
        if not abandoned:
            return
        now = self._clock.now()
        # If the store is down, the leases simply expire and the deliveries come due again.
        with contextlib.suppress(StoreUnavailable):
            await self._db.write_on_connection(
                lambda conn: outbox.release(conn, abandoned, now=now)
            )
        for item in abandoned:
            log.info("delivery_released", delivery_id=item.id, route=item.route)

    async def _attempt(self, item: Claimed, claimed_at: datetime) -> None:
        key = _key(item)
        await self._slots.acquire()  # claims run ahead: this waits for a handler slot
        turn = Turn(self._slots)
        self._started.add(key)
        try:
            if self._clock.now() + self._lease_needed > claimed_at + self._config.lease:
                # Waited so long that the lease could run out mid-attempt: give it back.
                turn.end()
                await self._release([item])
                return
            await self._attempt_leased(item, turn)
        finally:
            turn.end()
            self._started.discard(key)

    async def _attempt_leased(self, item: Claimed, turn: Turn) -> None:
        if self._tracer is NO_TRACING:  # no span to open, nor its attributes to build
            await self._attempt_traced(item, turn)
            return
        attributes: Attributes = {
            "delivery.id": item.id,
            "delivery.attempt": item.attempt,
            "delivery.route": item.route,
            "delivery.handler": item.handler,
            "event.id": item.event_id,
            "job.id": item.job_id,
        }
        # A child of the request that stored the event (its trace context is on the row).
        with self._tracer.continued(item.trace_parent, "deliver", attributes):
            await self._attempt_traced(item, turn)

    async def _attempt_traced(self, item: Claimed, turn: Turn) -> None:
        try:
            delivery = _delivery(item, self._db.sealer)
        except SealedDataUnreadable as exc:
            turn.end()
            await self._unreadable(item, str(exc))
            return
        started_at = self._clock.now()
        started = time.perf_counter()
        outcome = await self._call(item, delivery)
        elapsed = time.perf_counter() - started
        turn.end()  # the slot is for the handler call; recording waits for a commit
        finished = await self._record(item, outcome, started_at, elapsed)
        if finished is None:
            return
        decision, result, recorded = finished
        detail = result.detail
        self._observe(item, delivery, decision.status if recorded else "overtaken", elapsed)
        log.info(
            "delivery_attempt",
            delivery_id=item.id,
            route=item.route,
            attempt=item.attempt,
            event_type=delivery.event.type,
            job_id=item.job_id,
            status=decision.status if recorded else "overtaken",
            detail=detail,
            duration_ms=result.duration_ms,
        )
        if recorded and item.job_id is not None:
            # The job's next delivery to this route may have been waiting for this one; the
            # claim loop idles after a short claim, so tell it there may be work again.
            self._notifier.notify()
        if recorded and decision.status == "dead":
            await self._announce_dead(item, delivery, detail)

    async def _call(self, item: Claimed, delivery: Delivery) -> Outcome:
        handler = self._handlers.get(item.route)
        if handler is None:
            return Fail(f"route {item.route!r} is not configured (any more)")
        limiter = self._limiters.get(item.route)
        if limiter is not None:
            await limiter.wait()
        try:
            async with asyncio.timeout(self._config.attempt_timeout_seconds):
                return await handler.handle(delivery)
        except TimeoutError:
            limit = self._config.attempt_timeout_seconds
            return Retry(f"the handler did not finish within {limit:g} s")
        except Exception as exc:
            log.exception("handler_crashed", route=item.route, delivery_id=item.id)
            return Retry(f"handler error: {type(exc).__name__}")

    async def _record(
        self, item: Claimed, outcome: Outcome, started_at: datetime, elapsed: float
    ) -> tuple[Decision, Finish, bool] | None:
        """Decide what comes of `outcome` and record the attempt: (decision, what was written,
        whether this attempt was still ours), or None when the store could not take it."""
        decision = decide(
            outcome,
            attempt=item.attempt,
            max_attempts=item.max_attempts,
            now=self._clock.now(),
            rng=self._rng,
        )
        result = Finish(
            status=decision.status,
            next_attempt_at=decision.next_attempt_at,
            outcome=attempt_outcome(outcome, decision),
            detail=outcome.summary if isinstance(outcome, Ok) else outcome.error,
            started_at=started_at,
            duration_ms=round(elapsed * 1000, 2),
        )
        key = _key(item)
        self._recorded.add(key)
        try:
            recorded = await self._recorder.record(item, result)
        except StoreUnavailable:
            # The lease will expire and the delivery will be tried again: at least once.
            log.warning("delivery_result_unsaved", delivery_id=item.id, route=item.route)
            return None
        finally:
            self._recorded.discard(key)
        return decision, result, recorded

    async def _unreadable(self, item: Claimed, reason: str) -> None:
        """The event is sealed under a key this process lacks (the start-up key check makes that
        rare): count a failed attempt without calling the handler, so it is retried later."""
        log.error("delivery_event_unreadable", delivery_id=item.id, route=item.route, error=reason)
        await self._record(item, Retry(reason), self._clock.now(), 0.0)

    def _observe(self, item: Claimed, delivery: Delivery, status: str, elapsed: float) -> None:
        # The labelled children are looked up once each: `labels()` costs a lock and a join.
        key = (item.route, status)
        if (counter := self._counted.get(key)) is None:
            counter = self._counted[key] = self._metrics.deliveries.labels(*key)
        counter.inc()
        if (timing := self._timed.get(item.handler)) is None:
            timing = self._timed[item.handler] = self._metrics.handler_seconds.labels(item.handler)
        timing.observe(elapsed)
        if status == "succeeded":
            lag = (self._clock.now() - delivery.received_at).total_seconds()
            self._metrics.delivery_lag_seconds.observe(max(0.0, lag))

    async def _record_queue_stats(self) -> None:
        now = self._clock.now()
        try:
            depth, oldest = await self._db.read(lambda s: outbox.queue_stats(s, now=now))
        except StoreUnavailable:
            return
        self._metrics.queue_depth.set(depth)
        self._metrics.oldest_due_seconds.set(oldest)

    async def _announce_dead(self, item: Claimed, delivery: Delivery, error: str | None) -> None:
        if self._emit is None or delivery.event.type == DEAD_EVENT:
            return  # never a delivery.dead about a delivery.dead
        body = dead_event_body(item, delivery, error, now=self._clock.now())
        try:
            await self._emit(body, workspace=item.workspace)
        except StoreUnavailable:
            log.warning("dead_event_unsaved", delivery_id=item.id)


def _key(item: Claimed) -> tuple[str, int]:
    return item.id, item.attempt


def _delivery(item: Claimed, sealer: Sealer) -> Delivery:
    raw_body = open_body(sealer, item.event_id, item.raw_body, item.sealed_with)
    payload = orjson.loads(raw_body)
    return Delivery(
        id=item.id,
        attempt=item.attempt,
        route=item.route,
        event_id=item.event_id,
        event=normalize(payload, raw_body),
        payload=payload,
        received_at=item.received_at,
        source=item.source,
    )
