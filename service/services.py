"""What the lifespan builds once per app; the HTTP layer reads it from `request.state`."""

from __future__ import annotations

from dataclasses import dataclass

from service.admin_tokens import AdminToken
from service.clock import Clock
from service.config import Settings
from service.dispatch.notify import Notifier
from service.dispatch.replays import Replays
from service.dispatch.worker import Worker
from service.ingest import Ingest
from service.jobs.reconcile import Reconciler
from service.jobs.submit import Submissions
from service.metrics import Metrics
from service.routing import Subscription
from service.store.db import Database
from service.store.rejections_writer import RejectionLog
from service.throttle import Throttle


@dataclass(frozen=True, slots=True)
class Services:
    """The app's dependencies, built once per app (see `bootstrap.py`)."""

    settings: Settings
    db: Database
    ingest: Ingest
    worker: Worker
    notifier: Notifier
    routes: tuple[Subscription, ...]
    admin_tokens: tuple[AdminToken, ...]
    metrics: Metrics
    clock: Clock
    schema_heads: frozenset[str]
    schema_known: frozenset[str]
    submissions: Submissions
    reconciler: Reconciler | None  # None when no LLMTune API key is set
    rejections: RejectionLog  # refused webhook requests, recorded in the background
    auth_throttle: Throttle  # failed admin authentications per client address (API + console)
    replays: Replays  # events and dead deliveries queued again (admin API; the CLI builds its own)
