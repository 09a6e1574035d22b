"""The one ingest service: (raw body, headers, source) → authenticate → normalize → decide →
store.

Every source of events calls `Ingest.accept`: the webhook route, signed per-job callbacks, the
reconciler's polls, test events, internal events and replays, each with its own `source`.
Ingest decides what a new event does (`Decider`: its job's move, the routes that get a delivery)
and hands that to the writer as data; the store only writes it. Nothing here knows HTTP:
failures are raised as domain errors (`VerificationError`, `BodyError`, `StoreUnavailable`)
that the HTTP edge maps to answers in one table. This service records the
metrics and the one log line of each attempt; it returns only after the event is committed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from service import logs
from service.clock import Clock
from service.decision import Decision
from service.events import DEFAULT_WORKSPACE, Event, Source, metric_label, scoped_key
from service.ids import new_id
from service.jobs.state import job_move
from service.metrics import Metrics
from service.ports import EmittedEvent
from service.routing import Subscription, routes_for
from service.store.db import StoreUnavailable
from service.store.events import NewEvent
from service.store.writer import IngestWriter, Overloaded, WriteResult
from service.tracing import NO_TRACING, Tracer
from service.webhooks.normalize import BodyError, normalize, parse_body
from service.webhooks.verify import SigningKey, VerificationError, verify

log = structlog.get_logger("service.ingest")

Headers = Sequence[tuple[str, str]]
# Reasons an unsigned delivery is let through when WEBHOOK_ALLOW_UNSIGNED is on (a wrong or
# malformed signature never is).
_UNSIGNED_OK = ("no_secret_configured", "missing_signature", "body_signature_unsupported")
_TARGETS_REMEMBERED = 1024


@dataclass(frozen=True, slots=True)
class Accepted:
    """A stored event (or a repeat of one) and what it was normalized to."""

    event_id: str
    duplicate: bool
    event: Event
    verified: bool


class Ingest:
    """Authenticates, normalizes and stores events from every source."""

    def __init__(
        self,
        writer: IngestWriter,
        *,
        keys: Mapping[str, Sequence[SigningKey]],
        allow_unsigned: bool,
        metrics: Metrics,
        clock: Clock,
        routes: Sequence[Subscription],
        tracer: Tracer = NO_TRACING,
    ) -> None:
        self._writer = writer
        self._decider = Decider(routes)
        self._tracer = tracer
        self._keys = {workspace: tuple(found) for workspace, found in keys.items()}
        self._allow_unsigned = allow_unsigned
        self._metrics = metrics
        self._clock = clock

    @property
    def workspaces(self) -> frozenset[str]:
        """The workspaces this service receives for."""
        return frozenset(self._keys)

    async def emit(
        self, body: bytes, *, source: Source = "internal", workspace: str = DEFAULT_WORKSPACE
    ) -> EmittedEvent:
        """Store an event the service itself produced, trusted: the `EmitEvent` port that
        handlers, the worker and the reconciler are given."""
        accepted = await self.accept(body, [], source=source, trusted=True, workspace=workspace)
        return EmittedEvent(event_id=accepted.event_id, duplicate=accepted.duplicate)

    async def accept(
        self,
        raw_body: bytes,
        headers: Headers,
        *,
        source: Source,
        trusted: bool = False,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> Accepted:
        """Store one delivery and return once it is committed.

        `trusted` skips signature verification for events the service itself produced (test
        events, polls by our own client, internal events); they are stored as verified.
        Raises `VerificationError` (401), `BodyError` (400) or `StoreUnavailable` (503).
        `workspace` must be one of `workspaces` (its secrets verify the signature).
        """
        started = time.perf_counter()
        label = "unparsed"
        fields: dict[str, object] = {"source": source, "body_bytes": len(raw_body)}
        if workspace != DEFAULT_WORKSPACE:
            fields["workspace"] = workspace
        try:
            verified = trusted or self._authenticate(workspace, headers, raw_body)
            event = normalize(parse_body(raw_body), raw_body)
            event = replace(event, dedup_key=scoped_key(workspace, event.dedup_key))
            label = metric_label(event.type)
            fields |= {"event_type": label, "job_id": event.job_id, "verified": verified}
            _note_header_mismatch(headers, event, fields)
            result = await self._store(event, raw_body, headers, source, workspace, verified)
        except (VerificationError, BodyError, StoreUnavailable) as exc:
            self._refused(exc, label, raw_body, fields, started)
            raise
        outcome = "duplicate" if result.duplicate else "stored"
        fields |= {"event_id": result.event_id, "duplicate": result.duplicate}
        self._finish(label, outcome, fields, started)
        if result.duplicate:
            self._metrics.duplicates.labels(label).inc()
        return Accepted(result.event_id, result.duplicate, event, verified)

    async def _store(
        self,
        event: Event,
        raw_body: bytes,
        headers: Headers,
        source: Source,
        workspace: str,
        verified: bool,
    ) -> WriteResult:
        attributes = {"event.type": event.type, "event.source": source, "job.id": event.job_id}
        with self._tracer.span("ingest.store", attributes):
            received_at = self._clock.now()
            result = await self._writer.write(
                NewEvent(
                    id=new_id("evt"),
                    source=source,
                    workspace=workspace,
                    event=event,
                    raw_body=raw_body,
                    headers=[[name, value.replace("\x00", "")] for name, value in headers],
                    verified=verified,
                    received_at=received_at,
                    decision=self._decider.decide(
                        event, received_at=received_at, workspace=workspace
                    ),
                    trace_parent=self._tracer.traceparent(),
                )
            )
            self._tracer.annotate(
                {"event.id": result.event_id, "event.duplicate": result.duplicate}
            )
        return result

    def carries_signature(
        self, headers: Headers, body: bytes, *, workspace: str = DEFAULT_WORKSPACE
    ) -> bool:
        """False when a delivery has nothing to verify (no signature sent, no secret set); a
        signature that is there, right or wrong, is for `accept` to verify (or refuse)."""
        try:
            verify(self._keys[workspace], headers, body)
        except VerificationError as exc:
            return exc.reason not in _UNSIGNED_OK
        return True

    def count_unread(self, outcome: str) -> None:
        """Count a delivery whose body never arrived whole (too large, stalled, abandoned)."""
        self._metrics.received.labels("unparsed", outcome).inc()

    def _authenticate(self, workspace: str, headers: Headers, body: bytes) -> bool:
        try:
            verify(self._keys[workspace], headers, body)
        except VerificationError as exc:
            if self._allow_unsigned and exc.reason in _UNSIGNED_OK:
                return False
            raise
        return True

    def _refused(
        self,
        exc: Exception,
        label: str,
        body: bytes,
        fields: dict[str, object],
        started: float,
    ) -> None:
        if isinstance(exc, VerificationError):
            outcome = "rejected_signature"
            self._metrics.signature_failures.labels(exc.reason).inc()
        elif isinstance(exc, BodyError):
            outcome = "invalid_body"
        elif isinstance(exc, Overloaded):
            outcome = "overloaded"
        else:
            outcome = "unavailable"
        reason = getattr(exc, "reason", "store_unavailable")
        # A hash prefix lets an operator match a refused body with the sender's copy; the body
        # itself and any signature are never logged.
        fields |= {"reason": reason, "body_sha256": hashlib.sha256(body).hexdigest()[:16]}
        self._finish(label, outcome, fields, started, level="warning")

    def _finish(
        self,
        label: str,
        outcome: str,
        fields: dict[str, object],
        started: float,
        level: str = "info",
    ) -> None:
        elapsed = time.perf_counter() - started
        self._metrics.received.labels(label, outcome).inc()
        self._metrics.ingest_seconds.observe(elapsed)
        fields |= {"outcome": outcome, "ingest_ms": round(elapsed * 1000, 2)}
        if not logs.annotate(level, **fields):
            log.log(logs.LEVELS[level], "ingest", **fields)


class Decider:
    """Decides what storing an event as new does: its job's move and the routes that get a
    delivery. Pure but for a bounded memo of each event type's routes (matching globs is most
    of the work, and the routes do not change while the service runs)."""

    def __init__(self, routes: Sequence[Subscription]) -> None:
        self._routes = tuple(routes)
        self._targets: dict[tuple[str, str], tuple[Subscription, ...]] = {}

    def decide(self, event: Event, *, received_at: datetime, workspace: str) -> Decision:
        """The decision for `event`, received at `received_at` for `workspace`."""
        key = (event.type, workspace)
        targets = self._targets.get(key)
        if targets is None:
            targets = tuple(routes_for(event.type, self._routes, workspace))
            # Event names come from senders: remember a bounded number of them.
            if len(self._targets) < _TARGETS_REMEMBERED:
                self._targets[key] = targets
        return Decision(job=job_move(event, received_at), targets=targets)


def _note_header_mismatch(headers: Headers, event: Event, fields: dict[str, object]) -> None:
    # X-Webhook-Event is not signed: the body decides, but a mismatch is worth noting.
    for name, value in headers:
        if name.lower() == "x-webhook-event" and value != event.type:
            fields["event_header_mismatch"] = True
