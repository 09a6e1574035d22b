"""Prometheus metrics, one registry per app (tests build many apps in one process).

Label values are bounded: known event names or `other`, outcome and reason slugs; never text
taken from a request body. The registry also carries prometheus-client's process and platform
collectors (memory, CPU, open file descriptors), which show a slow-client pile-up.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """The collectors the service updates, registered in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.received = Counter(
            "llmtune_webhooks_received",
            "Deliveries received, by event type and outcome.",
            ["event_type", "outcome"],
            registry=self.registry,
        )
        self.signature_failures = Counter(
            "llmtune_webhook_signature_failures",
            "Deliveries refused with 401, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.doorbells = Counter(
            "llmtune_job_callback_doorbells",
            "Unsigned job callbacks, each only a doorbell, by what it did: started a poll of "
            "LLMTune (polling), none due (not_due), or none possible (jobs_disabled).",
            ["outcome"],
            registry=self.registry,
        )
        self.admin_auth_failures = Counter(
            "llmtune_admin_auth_failures",
            "Failed admin authentications (a wrong token), by surface (api or console) and "
            "outcome (refused, or throttled once a client address failed too often).",
            ["surface", "outcome"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "llmtune_webhook_duplicates",
            "Deliveries recognised as repeats of a stored event.",
            ["event_type"],
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "llmtune_webhook_ingest_seconds",
            "Time from a whole body in hand to its outcome (verify, parse, commit).",
            buckets=_FAST_BUCKETS,
            registry=self.registry,
        )
        self.ingest_batch_events = Histogram(
            "llmtune_ingest_batch_events",
            "Deliveries committed together in one group-commit transaction.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.body_read_seconds = Histogram(
            "llmtune_webhook_body_read_seconds",
            "Time spent receiving webhook bodies from the client, whatever the outcome.",
            buckets=(*_FAST_BUCKETS, 10, 30),
            registry=self.registry,
        )
        self.deliveries = Counter(
            "llmtune_deliveries",
            "Delivery attempts finished, by route and the status they left the delivery in.",
            ["route", "status"],
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "llmtune_handler_seconds",
            "Time a handler took for one attempt, by handler.",
            ["handler"],
            buckets=(*_FAST_BUCKETS, 10, 30),
            registry=self.registry,
        )
        self.delivery_lag_seconds = Histogram(
            "llmtune_delivery_lag_seconds",
            "Time from storing an event to a successful delivery of it.",
            buckets=(*_FAST_BUCKETS, 10, 30, 60, 300, 3600),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "llmtune_delivery_queue_depth",
            "Deliveries not yet finished (pending, in flight or retrying).",
            registry=self.registry,
        )
        self.oldest_due_seconds = Gauge(
            "llmtune_delivery_oldest_due_seconds",
            "How long the oldest unfinished delivery has been due.",
            registry=self.registry,
        )
