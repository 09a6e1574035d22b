"""The ingest writer on SQLite and PostgreSQL: dedup, races, jobs, deliveries, odd values."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.routing import Subscription
from service.store.db import make_sessionmaker
from service.store.tables import DeliveryRow, EventRow, JobRow
from service.store.writer import IngestWriter
from tests.helpers import T0, lifecycle, new_event, single_engine_database


async def rows(engine: AsyncEngine, model: type[Any]) -> list[Any]:
    async with make_sessionmaker(engine)() as session:
        return list((await session.scalars(sa.select(model))).all())


@pytest.fixture
async def writer(engine: AsyncEngine) -> AsyncIterator[IngestWriter]:
    running = IngestWriter(single_engine_database(engine))
    async with running.running():
        yield running


class TestDedup:
    async def test_first_copy_is_stored_with_exact_bytes(
        self, engine: AsyncEngine, writer: IngestWriter
    ) -> None:
        """The event row keeps the raw body byte for byte and one delivery per route."""
        raw = b'{ "event" : "training.started",\n "data": {"jobId": "j\\u00e9"} }'
        result = await writer.write(new_event({}, raw=raw))
        assert not result.duplicate
        [event] = await rows(engine, EventRow)
        assert (event.id, event.raw_body, event.job_id) == (result.event_id, raw, "jé")
        assert event.received_at == T0
        [delivery] = await rows(engine, DeliveryRow)
        assert (delivery.event_id, delivery.route, delivery.status) == (event.id, "log", "pending")

    async def test_repeat_counts_and_fans_out_nothing(
        self, engine: AsyncEngine, writer: IngestWriter
    ) -> None:
        """A repeat bumps the counter on the original and creates no delivery."""
        first = await writer.write(new_event(lifecycle("training.started")))
        later = T0 + timedelta(minutes=5)
        again = await writer.write(new_event(lifecycle("training.started"), at=later))
        assert again.duplicate
        assert again.event_id == first.event_id
        [event] = await rows(engine, EventRow)
        assert (event.duplicate_count, event.last_duplicate_at) == (1, later)
        assert len(await rows(engine, DeliveryRow)) == 1

    async def test_concurrent_copies_store_once(
        self, engine: AsyncEngine, writer: IngestWriter
    ) -> None:
        """Copies racing on separate connections: one insert wins, the rest are duplicates."""
        copies = 12
        results = await asyncio.gather(
            *(writer.write(new_event(lifecycle("training.completed"))) for _ in range(copies))
        )
        assert sum(not r.duplicate for r in results) == 1
        assert len({r.event_id for r in results}) == 1
        [event] = await rows(engine, EventRow)
        assert event.duplicate_count == copies - 1
        assert len(await rows(engine, DeliveryRow)) == 1
        assert len(await rows(engine, JobRow)) == 1

    async def test_routes_decide_deliveries(self, engine: AsyncEngine) -> None:
        """Only subscribed routes get a delivery; an unsubscribed event gets none."""
        routes = [
            Subscription("slack", "slack", ("training.*",)),
            Subscription("deploys", "log", ("model.*",)),
        ]
        writer = IngestWriter(single_engine_database(engine))
        async with writer.running():
            await writer.write(new_event(lifecycle("training.failed"), routes=routes))
            await writer.write(new_event({"event": "usage.threshold_reached"}, routes=routes))
        assert [d.route for d in await rows(engine, DeliveryRow)] == ["slack"]
        assert len(await rows(engine, EventRow)) == 2


# (events in arrival order) -> (final status, which timestamps are set)
ORDERS = [
    pytest.param(
        ["training.started", "training.completed", "model.deployed"],
        "deployed",
        id="in-order",
    ),
    pytest.param(["training.completed", "training.started"], "completed", id="late-start"),
    pytest.param(["model.deployed", "training.completed"], "deployed", id="deploy-first"),
    pytest.param(["training.completed", "training.failed"], "completed", id="first-terminal-wins"),
    pytest.param(["training.failed", "training.completed"], "failed", id="failed-first-wins"),
    pytest.param(["training.started"], "running", id="started-only"),
]


@pytest.mark.parametrize("together", [False, True], ids=["one-by-one", "one-batch"])
@pytest.mark.parametrize(("order", "final"), ORDERS)
async def test_job_status_never_regresses(
    engine: AsyncEngine, writer: IngestWriter, order: list[str], final: str, together: bool
) -> None:
    """Whatever the arrival order, the status is the highest rank reached first, whether the
    events arrive apart or are committed together in one batch."""
    fields = {
        "training.started": "started_at",
        "training.completed": "finished_at",
        "training.failed": "finished_at",
        "model.deployed": "deployed_at",
    }
    news = [
        new_event(lifecycle(name), at=T0 + timedelta(minutes=index))
        for index, name in enumerate(order)
    ]
    if together:
        await asyncio.gather(*(writer.write(new) for new in news))
    else:
        for new in news:
            await writer.write(new)
    [job] = await rows(engine, JobRow)
    assert job.status == final
    for name in order:
        assert getattr(job, fields[name]) is not None, name


async def test_timestamps_come_from_the_event_and_fill_once(
    engine: AsyncEngine, writer: IngestWriter
) -> None:
    """occurred_at fills a timestamp; a later copy with another time does not overwrite it."""
    body = {**lifecycle("training.started"), "timestamp": "2025-11-08T10:00:00Z"}
    await writer.write(new_event(body))
    other = {**lifecycle("training.started", extra=1), "id": "evt_other"}
    await writer.write(new_event({**other, "timestamp": "2025-11-08T11:00:00Z"}))
    [job] = await rows(engine, JobRow)
    assert job.started_at == datetime(2025, 11, 8, 10, tzinfo=UTC)


async def test_completion_brings_metrics_and_artifact(
    engine: AsyncEngine, writer: IngestWriter
) -> None:
    """The event that moves a job forward records its metrics, model and artifact."""
    await writer.write(new_event(lifecycle("training.started", baseModel="base")))
    await writer.write(
        new_event(lifecycle("training.completed", artifact="ft-1", metrics={"loss": 0.5}))
    )
    [job] = await rows(engine, JobRow)
    assert (job.status, job.base_model, job.artifact, job.metrics) == (
        "completed",
        "base",
        "ft-1",
        {"loss": 0.5},
    )


async def test_failure_keeps_error(engine: AsyncEngine, writer: IngestWriter) -> None:
    """A failed job keeps the error text, also from an error object."""
    await writer.write(new_event(lifecycle("training.failed", error={"message": "cancelled"})))
    [job] = await rows(engine, JobRow)
    assert (job.status, job.error) == ("failed", "cancelled")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(
            {"event": "training.completed", "test": True, "data": {"jobId": "j"}}, id="test"
        ),
        pytest.param(
            {"event": "usage.threshold_reached", "data": {"jobId": "j"}}, id="not-lifecycle"
        ),
        pytest.param({"event": "training.started", "data": {}}, id="no-job-id"),
    ],
)
async def test_events_that_do_not_touch_jobs(
    engine: AsyncEngine, writer: IngestWriter, payload: dict[str, Any]
) -> None:
    """Test deliveries, other events and events without a job id create no job."""
    await writer.write(new_event(payload))
    assert await rows(engine, JobRow) == []
    assert len(await rows(engine, EventRow)) == 1


async def test_odd_values_are_storable(engine: AsyncEngine, writer: IngestWriter) -> None:
    """NUL characters, huge ids and odd metrics never make the database refuse a body."""
    payload = {
        "id": "x" * 3000,
        "event": "training.completed\x00",
        "data": {
            "jobId": "j\x00" * 2000,
            "modelName": "m" * 10000,
            "metrics": {"k\x00": "v\x00", "big": 10**18, "neg": -1.5e300},
            "error": {"deep": [[[[["\x00"]]]]]},
        },
    }
    result = await writer.write(new_event(payload))
    [event] = await rows(engine, EventRow)
    assert event.id == result.event_id
    assert "\x00" not in event.type
    assert len(event.dedup_key) < 300
    assert b"\\u0000" in event.raw_body  # the exact bytes are kept, escapes and all
