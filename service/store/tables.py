"""The schema, as SQLAlchemy 2 typed tables. Alembic migrations are written against this file.

Raw bodies are kept as bytes (BLOB/bytea), never re-encoded. Times are always aware UTC, also on
SQLite, which would otherwise read them back naive.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on every dialect."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite stores text; naive UTC keeps its lexical order equal to time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        # None is SQL NULL, not JSON 'null', so COALESCE can fill an empty value later.
        dict[str, Any]: sa.JSON(none_as_null=True),
    }


class EventRow(Base):
    """One stored delivery; duplicates only bump `duplicate_count`."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(20))
    workspace: Mapped[str] = mapped_column(sa.String(40), server_default="default")
    dedup_key: Mapped[str] = mapped_column(sa.Text, unique=True)
    external_id: Mapped[str | None] = mapped_column(sa.Text)
    type: Mapped[str] = mapped_column(sa.Text, index=True)
    job_id: Mapped[str | None] = mapped_column(sa.Text, index=True)
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime]
    raw_body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    body_bytes: Mapped[int] = mapped_column(server_default="0")
    headers: Mapped[list[list[str]]] = mapped_column(sa.JSON)
    verified: Mapped[bool]
    is_test: Mapped[bool]
    duplicate_count: Mapped[int] = mapped_column(server_default="0")
    last_duplicate_at: Mapped[datetime | None]
    # The key that sealed raw_body and headers (service/store/sealing.py); NULL: kept in clear.
    sealed_with: Mapped[str | None] = mapped_column(sa.String(16))

    __table_args__ = (sa.Index("ix_events_received_at_id", "received_at", "id"),)


class JobRow(Base):
    """A fine-tune job: one we submitted (`llmtune_job_id` empty until LLMTune answers), or one
    first heard of through its events."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    llmtune_job_id: Mapped[str | None] = mapped_column(sa.Text, unique=True)
    status: Mapped[str] = mapped_column(sa.String(20))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    callback_token: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    dataset: Mapped[str | None] = mapped_column(sa.Text)
    training_method: Mapped[str | None] = mapped_column(sa.String(40))
    params: Mapped[dict[str, Any] | None]
    submit_error: Mapped[str | None] = mapped_column(sa.Text)
    submitted_at: Mapped[datetime | None]
    last_polled_at: Mapped[datetime | None]
    next_poll_at: Mapped[datetime | None]
    poll_failures: Mapped[int] = mapped_column(server_default="0")
    base_model: Mapped[str | None] = mapped_column(sa.Text)
    artifact: Mapped[str | None] = mapped_column(sa.Text)
    deployment_id: Mapped[str | None] = mapped_column(sa.Text)
    metrics: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    deployed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The key that sealed `dataset` (service/store/sealing.py); NULL: kept in clear.
    sealed_with: Mapped[str | None] = mapped_column(sa.String(16))

    __table_args__ = (sa.Index("ix_jobs_created_at_id", "created_at", "id"),)


class DeliveryRow(Base):
    """One event to one route: the outbox row the dispatch worker claims.

    `seq` is the store order (a sequence on PostgreSQL, max + 1 under SQLite's single writer):
    a delivery waits while an earlier one of the same job and route is still unfinished.
    """

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.ForeignKey("events.id", ondelete="CASCADE"))
    route: Mapped[str] = mapped_column(sa.String(100))
    handler: Mapped[str] = mapped_column(sa.String(100))
    job_id: Mapped[str | None] = mapped_column(sa.Text)
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(20))
    attempts: Mapped[int] = mapped_column(server_default="0")
    max_attempts: Mapped[int] = mapped_column(server_default="9")
    next_attempt_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    trace_parent: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        sa.UniqueConstraint("event_id", "route", name="uq_deliveries_event_id_route"),
        sa.Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        sa.Index("ix_deliveries_job_id_route_seq", "job_id", "route", "seq"),
        sa.Index("ix_deliveries_seq", "seq"),
        sa.Index("ix_deliveries_created_at_id", "created_at", "id"),
        # `GET /admin/stream` follows changes by (updated_at, id).
        sa.Index("ix_deliveries_updated_at_id", "updated_at", "id"),
    )


class AttemptRow(Base):
    """One try of one delivery: when, how long, and what came of it."""

    __tablename__ = "delivery_attempts"

    delivery_id: Mapped[str] = mapped_column(
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime]
    duration_ms: Mapped[float] = mapped_column(sa.Float)
    outcome: Mapped[str] = mapped_column(sa.String(20))
    detail: Mapped[str | None] = mapped_column(sa.Text)


class InferenceRunRow(Base):
    """One follow-up inference on a new model: the prompt, what came back, and how it went."""

    __tablename__ = "inference_runs"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(sa.String(40))
    prompt_index: Mapped[int]
    # Indexed: deleting an event (purge) cascades here.
    event_id: Mapped[str] = mapped_column(
        sa.ForeignKey("events.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str | None] = mapped_column(sa.Text, index=True)
    route: Mapped[str] = mapped_column(sa.String(100))
    model: Mapped[str] = mapped_column(sa.Text)
    prompt: Mapped[str] = mapped_column(sa.Text)
    output: Mapped[str | None] = mapped_column(sa.Text)
    tokens: Mapped[int | None]
    latency_ms: Mapped[float | None] = mapped_column(sa.Float)
    status: Mapped[str] = mapped_column(sa.String(20))
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    # The key that sealed prompt and output (service/store/sealing.py); NULL: kept in clear.
    sealed_with: Mapped[str | None] = mapped_column(sa.String(16))

    __table_args__ = (
        sa.UniqueConstraint(
            "delivery_id", "prompt_index", name="uq_inference_runs_delivery_id_prompt_index"
        ),
    )


class HandlerMemoryRow(Base):
    """A fact a handler keeps across attempts and processes (e.g. a job's Slack thread)."""

    __tablename__ = "handler_memory"

    scope: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime]


class RejectionRow(Base):
    """A refused webhook request: what an operator needs to tell why, never its body or a header
    value (an unsigned request may carry anything). Bounded by age and count."""

    __tablename__ = "webhook_rejections"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    received_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(sa.String(40))
    status: Mapped[int]
    path: Mapped[str] = mapped_column(sa.String(200))
    workspace: Mapped[str | None] = mapped_column(sa.String(40))
    client_address: Mapped[str | None] = mapped_column(sa.String(64))
    body_bytes: Mapped[int | None]
    body_sha256: Mapped[str | None] = mapped_column(sa.String(16))
    header_names: Mapped[list[str]] = mapped_column(sa.JSON)

    __table_args__ = (sa.Index("ix_webhook_rejections_received_at_id", "received_at", "id"),)


class DedupTombstoneRow(Base):
    """The dedup key of a purged event: a replay of its body stays a duplicate after the body
    is gone. Deleted in turn by `purge` once older than DEDUP_RETENTION_DAYS."""

    __tablename__ = "dedup_tombstones"

    dedup_key: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(40))
    received_at: Mapped[datetime] = mapped_column(index=True)
    purged_at: Mapped[datetime]


class ConsoleSessionRow(Base):
    """A console sign-in: live until it expires or is revoked (logout, the sessions page), for
    every process. The cookie is signed with the token; this row is what logging out ends."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    token_name: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]
    client_address: Mapped[str | None] = mapped_column(sa.String(64))


class EncryptionKeyRow(Base):
    """A key that has sealed stored data, with a canary sealed under it: a start with a wrong or
    missing key is refused before anything is read or written (service/store/keys.py)."""

    __tablename__ = "encryption_keys"

    key_id: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    canary: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime]


# Core tables, for the write path: statements on them skip the ORM's bulk-persistence layer,
# which cost more than the SQL itself on every ingest.
EVENTS = cast(sa.Table, EventRow.__table__)
JOBS = cast(sa.Table, JobRow.__table__)
DELIVERIES = cast(sa.Table, DeliveryRow.__table__)
ATTEMPTS = cast(sa.Table, AttemptRow.__table__)
HANDLER_MEMORY = cast(sa.Table, HandlerMemoryRow.__table__)
INFERENCE_RUNS = cast(sa.Table, InferenceRunRow.__table__)
REJECTIONS = cast(sa.Table, RejectionRow.__table__)
ENCRYPTION_KEYS = cast(sa.Table, EncryptionKeyRow.__table__)
DEDUP_TOMBSTONES = cast(sa.Table, DedupTombstoneRow.__table__)
CONSOLE_SESSIONS = cast(sa.Table, ConsoleSessionRow.__table__)
# The tables with sealed columns and a `sealed_with` (service/store/sealing.py).
SEALED_TABLES = (EVENTS, INFERENCE_RUNS, JOBS)
