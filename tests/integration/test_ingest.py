"""The ingest service without HTTP, on SQLite and PostgreSQL: what every event source calls."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from service import logs
from service.clock import FakeClock
from service.ingest import Ingest
from service.metrics import Metrics
from service.routing import DEFAULT_ROUTES
from service.store.db import Database, StoreUnavailable, open_database
from service.store.tables import EventRow, JobRow
from service.store.writer import IngestWriter
from service.webhooks.normalize import BodyError
from service.webhooks.verify import VerificationError, signing_keys
from tests.helpers import (
    MODEL_ID,
    SECRET,
    join_sqlite_threads,
    single_engine_database,
    w3_body,
    w3_deployed,
    w3_headers,
)

T0 = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)


async def make_ingest(
    db: Database, stack: contextlib.AsyncExitStack, *, allow_unsigned: bool = False
) -> tuple[Ingest, Metrics]:
    """An ingest service whose writer runs until the test ends."""
    metrics = Metrics()
    writer = IngestWriter(db)
    await stack.enter_async_context(writer.running())
    ingest = Ingest(
        writer,
        keys={"default": signing_keys([SECRET])},
        allow_unsigned=allow_unsigned,
        metrics=metrics,
        clock=FakeClock(T0),
        routes=DEFAULT_ROUTES,
    )
    return ingest, metrics


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.fixture
def db(engine: AsyncEngine) -> Database:
    return single_engine_database(engine)


async def stored(db: Database) -> list[EventRow]:
    async with db.sessions() as session:
        return list((await session.scalars(sa.select(EventRow))).all())


class TestAccept:
    async def test_signed_webhook_is_stored_and_counted(
        self, db: Database, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """A signed body is stored with its source, exact bytes and headers; metrics count it."""
        ingest, metrics = await make_ingest(db, exit_stack)
        body = w3_body("training.started", "job-i1")
        headers = list(w3_headers(body).items())
        accepted = await ingest.accept(body, headers, source="webhook")
        assert (accepted.duplicate, accepted.verified, accepted.event.job_id) == (
            False,
            True,
            "job-i1",
        )
        [row] = await stored(db)
        assert (row.id, row.source, row.raw_body, row.body_bytes) == (
            accepted.event_id,
            "webhook",
            body,
            len(body),
        )
        assert row.received_at == T0
        assert ["X-Webhook-Signature", headers[1][1]] in row.headers
        counted = sample(
            metrics.registry,
            "llmtune_webhooks_received_total",
            event_type="training.started",
            outcome="stored",
        )
        assert counted == 1.0

    async def test_repeat_is_a_duplicate_of_the_first(
        self, db: Database, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """The same event twice answers the first event's id, flagged duplicate."""
        ingest, metrics = await make_ingest(db, exit_stack)
        body = w3_body("training.completed", "job-i2")
        headers = list(w3_headers(body).items())
        first = await ingest.accept(body, headers, source="webhook")
        again = await ingest.accept(body, headers, source="webhook")
        assert (again.event_id, again.duplicate) == (first.event_id, True)
        assert sample(
            metrics.registry, "llmtune_webhook_duplicates_total", event_type="training.completed"
        )

    async def test_trusted_source_skips_signatures(
        self, db: Database, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """An event the service produced itself is stored as verified, under its own source."""
        ingest, _ = await make_ingest(db, exit_stack)
        accepted = await ingest.accept(
            w3_body("model.deployed", "job-i3"), [], source="poll", trusted=True
        )
        [row] = await stored(db)
        assert (row.source, row.verified, accepted.verified) == ("poll", True, True)
        async with db.sessions() as session:
            [job] = (await session.scalars(sa.select(JobRow))).all()
        assert (job.llmtune_job_id, job.status) == ("job-i3", "deployed")


class TestEmit:
    """`Ingest.emit`: the `EmitEvent` port the handlers, the worker and the reconciler get."""

    async def test_emitted_event_is_stored_trusted_under_its_source_and_workspace(
        self, db: Database, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """An emitted body needs no signature; it is stored verified, as given."""
        ingest, _ = await make_ingest(db, exit_stack)
        emitted = await ingest.emit(
            w3_body("training.started", "job-e1"), source="poll", workspace="team-a"
        )
        [row] = await stored(db)
        assert (row.id, row.source, row.workspace, row.verified) == (
            emitted.event_id,
            "poll",
            "team-a",
            True,
        )
        assert emitted.duplicate is False

    async def test_emitting_again_answers_the_first_id_as_a_duplicate(
        self, db: Database, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """The same internal event twice is one event; the second answer says so."""
        ingest, _ = await make_ingest(db, exit_stack)
        body = w3_body("training.completed", "job-e2")
        first = await ingest.emit(body)
        again = await ingest.emit(body)
        assert (again.event_id, again.duplicate) == (first.event_id, True)
        [row] = await stored(db)
        assert row.source == "internal"


class TestDeploymentsPerJob:
    async def test_two_jobs_deploying_one_model_are_two_events(
        self, db: Database, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """Two jobs ending in one model id each get their event stored and their job deployed."""
        ingest, _ = await make_ingest(db, exit_stack)
        answers = [
            await ingest.accept(body, list(w3_headers(body).items()), source="webhook")
            for body in (w3_deployed("job-d1"), w3_deployed("job-d2"))
        ]
        assert [answer.duplicate for answer in answers] == [False, False]
        assert sorted(row.dedup_key for row in await stored(db)) == [
            f"sem:model.deployed:job-d1:{MODEL_ID}",
            f"sem:model.deployed:job-d2:{MODEL_ID}",
        ]
        async with db.sessions() as session:
            jobs = (await session.scalars(sa.select(JobRow).order_by(JobRow.llmtune_job_id))).all()
        assert [(job.llmtune_job_id, job.status) for job in jobs] == [
            ("job-d1", "deployed"),
            ("job-d2", "deployed"),
        ]

    async def test_restamped_retry_of_each_is_a_duplicate(
        self, db: Database, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """LLMTune's retry (same content, new timestamp) of each job's deployment is a duplicate."""
        ingest, _ = await make_ingest(db, exit_stack)
        for job_id in ("job-d3", "job-d4"):
            body = w3_deployed(job_id)
            first = await ingest.accept(body, list(w3_headers(body).items()), source="webhook")
            retry = w3_deployed(job_id, at="2025-11-08T15:05:00.000Z")
            again = await ingest.accept(retry, list(w3_headers(retry).items()), source="webhook")
            assert (again.event_id, again.duplicate) == (first.event_id, True)
        rows = await stored(db)
        assert sorted((row.job_id, row.duplicate_count) for row in rows) == [
            ("job-d3", 1),
            ("job-d4", 1),
        ]


class TestRefused:
    async def test_unsigned_raises_and_stores_nothing(
        self, db: Database, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """No signature: `VerificationError` with its reason, counted, nothing stored."""
        ingest, metrics = await make_ingest(db, exit_stack)
        with pytest.raises(VerificationError) as caught:
            await ingest.accept(w3_body(), [], source="webhook")
        assert caught.value.reason == "missing_signature"
        assert await stored(db) == []
        assert sample(
            metrics.registry, "llmtune_webhook_signature_failures_total", reason="missing_signature"
        )

    async def test_unsigned_allowed_in_development_is_unverified(
        self, db: Database, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """With unsigned deliveries allowed, an unsigned body is stored as unverified."""
        ingest, _ = await make_ingest(db, exit_stack, allow_unsigned=True)
        accepted = await ingest.accept(w3_body(), [], source="webhook")
        assert accepted.verified is False
        [row] = await stored(db)
        assert row.verified is False

    async def test_signed_garbage_raises_body_error(
        self, db: Database, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """A signed body that is not a JSON object raises `BodyError`, logged at warning."""
        ingest, metrics = await make_ingest(db, exit_stack)
        body = b"[1, 2]"
        with capture_logs() as lines, pytest.raises(BodyError) as caught:
            await ingest.accept(body, list(w3_headers(body).items()), source="webhook")
        assert caught.value.reason == "not_an_object"
        [line] = [line for line in lines if line["event"] == "ingest"]
        assert (line["log_level"], line["outcome"], line["reason"]) == (
            "warning",
            "invalid_body",
            "not_an_object",
        )
        assert sample(
            metrics.registry,
            "llmtune_webhooks_received_total",
            event_type="unparsed",
            outcome="invalid_body",
        )

    async def test_store_failure_raises_store_unavailable(
        self, tmp_path: Path, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """A store that cannot be opened surfaces as `StoreUnavailable`, counted `unavailable`."""
        db = open_database(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}")
        ingest, metrics = await make_ingest(db, exit_stack)
        body = w3_body()
        try:
            with pytest.raises(StoreUnavailable):
                await ingest.accept(body, list(w3_headers(body).items()), source="webhook")
        finally:
            await db.aclose()
            await asyncio.to_thread(join_sqlite_threads)
        assert sample(
            metrics.registry,
            "llmtune_webhooks_received_total",
            event_type="training.completed",
            outcome="unavailable",
        )


class TestLogLine:
    async def test_own_line_outside_a_request(
        self, db: Database, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """Called outside a request, ingest writes one `ingest` line of its own."""
        ingest, _ = await make_ingest(db, exit_stack)
        with capture_logs() as lines:
            accepted = await ingest.accept(
                w3_body(job_id="job-l1"), [], source="test", trusted=True
            )
        [line] = [line for line in lines if line["event"] == "ingest"]
        assert (line["source"], line["outcome"], line["event_id"]) == (
            "test",
            "stored",
            accepted.event_id,
        )

    async def test_annotates_the_request_line_inside_a_request(
        self, db: Database, exit_stack: contextlib.AsyncExitStack
    ) -> None:
        """Inside a request, ingest adds its fields to the request's one line instead."""
        ingest, _ = await make_ingest(db, exit_stack)
        with capture_logs() as lines, logs.canonical_line() as line:
            accepted = await ingest.accept(
                w3_body(job_id="job-l2"), [], source="test", trusted=True
            )
        assert [entry for entry in lines if entry["event"] == "ingest"] == []
        assert (line.fields["event_id"], line.fields["outcome"], line.level) == (
            accepted.event_id,
            "stored",
            "info",
        )
