"""Encryption at rest on SQLite and PostgreSQL: what the database holds (read past the store's
own code), what the service reads back, the key check at start, the worker, and rotation."""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.clock import FakeClock
from service.crypto.sealing import generate_key, keyring_from, parse_key
from service.dispatch.notify import Notifier
from service.dispatch.worker import Worker
from service.handlers.base import Delivery, Handler, Ok, Outcome
from service.ingest import Ingest
from service.metrics import Metrics
from service.ports import InferenceRun
from service.routing import Subscription
from service.store import events as event_store
from service.store import jobs, rotation
from service.store.db import Database
from service.store.errors import SealedDataUnreadable
from service.store.inference_runs import StoredRuns, runs_of_job
from service.store.jobs import Submission
from service.store.keys import KeyCheckFailed, check_keys, forget_keys_except, registered
from service.store.rotation import pending, reseal_events, reseal_jobs, reseal_runs
from service.store.sealing import PLAINTEXT, Sealer, open_dataset
from service.store.tables import EventRow, JobRow
from tests.helpers import emptied_engine, event_row, single_engine_database, w3_body
from tests.wiring import bootstrap_for_tests

T0 = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)
OLD = generate_key()
NEW = generate_key()
MARKER = "s3://private-bucket/dataset.jsonl?X-Amz-Signature=deadbeef"
ROUTES = (Subscription("hook", "recorder", ("*",), max_attempts=3),)


@dataclass
class Recorder:
    """A handler that records the deliveries it was given."""

    name: ClassVar[str] = "recorder"
    seen: list[Delivery] = field(default_factory=list)

    async def handle(self, delivery: Delivery) -> Outcome:
        self.seen.append(delivery)
        return Ok("fine")


def database(engine: AsyncEngine, *keys: str) -> Database:
    """The test database, sealing under `keys` (none: in clear)."""
    sealer = Sealer(keyring_from(list(keys))) if keys else PLAINTEXT
    return dataclasses.replace(single_engine_database(engine), sealer=sealer)


@dataclass
class Service:
    db: Database
    ingest: Ingest
    worker: Worker
    recorder: Recorder


@pytest.fixture
async def service_for(engine: AsyncEngine) -> AsyncIterator[Any]:
    """Builds the service on the test database under some keys (its start-up key check
    included); writers stop after."""
    async with contextlib.AsyncExitStack() as stack:

        async def build(*keys: str) -> Service:
            recorder = Recorder()
            svc = await stack.enter_async_context(
                bootstrap_for_tests(
                    engine,
                    routes=ROUTES,
                    handlers=dict[str, Handler]({"hook": recorder}),
                    clock=FakeClock(T0),
                    rng=random.Random(7),
                    encryption_keys=list(keys),
                )
            )
            return Service(svc.db, svc.ingest, svc.worker, recorder)

        yield build


async def store(svc: Service, job: str = "job-1", **data: Any) -> tuple[str, bytes]:
    body = w3_body("training.started", job, dataset=MARKER, **data)
    accepted = await svc.ingest.accept(
        body,
        [("content-type", "application/json"), ("x-marker", MARKER)],
        source="test",
        trusted=True,
    )
    return accepted.event_id, body


async def raw_rows(engine: AsyncEngine, table: str) -> list[dict[str, Any]]:
    """Every row of `table` as the database returns it, with no decoding of ours."""
    async with engine.connect() as conn:
        result = await conn.execute(sa.text(f"SELECT * FROM {table}"))  # noqa: S608
        return [dict(row._mapping) for row in result]


def as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


async def test_sealed_rows_hide_the_text_and_keep_the_indexed_columns(
    engine: AsyncEngine, service_for: Any
) -> None:
    svc = await service_for(NEW)
    event_id, body = await store(svc)
    [row] = await raw_rows(engine, "events")
    assert row["sealed_with"] == parse_key(NEW).id
    assert MARKER.encode() not in as_bytes(row["raw_body"])
    assert b"training" not in as_bytes(row["raw_body"])
    assert MARKER.encode() not in as_bytes(row["headers"])
    assert b"content-type" not in as_bytes(row["headers"])
    # Computed from the clear body before sealing, and still queryable.
    assert row["body_bytes"] == len(body)
    assert row["dedup_key"] == "sem:training.started:job-1"
    assert row["type"] == "training.started"
    assert row["job_id"] == "job-1"

    async def read(session: AsyncSession) -> event_store.OpenedEvent:
        opened = await event_store.opened_event(session, event_id, svc.db.sealer)
        assert opened is not None
        return opened

    content = await svc.db.read(read)
    assert content.raw_body == body
    assert content.headers == [["content-type", "application/json"], ["x-marker", MARKER]]


async def test_a_repeat_is_deduplicated_on_the_clear_key(
    engine: AsyncEngine, service_for: Any
) -> None:
    svc = await service_for(NEW)
    first, _ = await store(svc)
    body = w3_body("training.started", "job-1", dataset=MARKER)
    again = await svc.ingest.accept(body, [], source="test", trusted=True)
    assert again.duplicate
    assert again.event_id == first
    assert len(await raw_rows(engine, "events")) == 1


async def test_rows_from_before_encryption_still_read(
    engine: AsyncEngine, service_for: Any
) -> None:
    clear = await service_for()
    old_id, old_body = await store(clear, "job-old")
    sealed = await service_for(NEW)
    new_id, new_body = await store(sealed, "job-new")
    by_id = {row["id"]: row for row in await raw_rows(engine, "events")}
    assert by_id[old_id]["sealed_with"] is None
    assert by_id[new_id]["sealed_with"] == parse_key(NEW).id

    async def read(session: AsyncSession) -> list[bytes]:
        opened = [
            await event_store.opened_event(session, i, sealed.db.sealer) for i in (old_id, new_id)
        ]
        return [event.raw_body for event in opened if event]

    assert await sealed.db.read(read) == [old_body, new_body]


async def test_the_worker_hands_handlers_the_clear_event(
    engine: AsyncEngine, service_for: Any
) -> None:
    svc = await service_for(NEW)
    _, body = await store(svc)
    assert await svc.worker.run_until_idle() == 1
    [delivery] = svc.recorder.seen
    assert delivery.payload == orjson.loads(body)
    assert delivery.event.job_id == "job-1"


async def test_an_event_sealed_under_a_missing_key_is_retried_not_handed_over(
    engine: AsyncEngine, service_for: Any
) -> None:
    sealed = await service_for(OLD)
    await store(sealed)
    # A process started without the old key (the start-up check is bypassed here).
    other = dataclasses.replace(sealed, db=database(engine, NEW))
    worker = Worker(
        other.db,
        routes={route.name: route for route in ROUTES},
        handlers=dict[str, Handler]({"hook": other.recorder}),
        emit=None,
        metrics=Metrics(),
        clock=FakeClock(T0),
        notifier=Notifier(),
        rng=random.Random(7),
    )
    assert await worker.run_until_idle() == 1
    assert other.recorder.seen == []
    [delivery] = await raw_rows(engine, "deliveries")
    assert delivery["status"] == "retrying"
    assert f"key {parse_key(OLD).id}" in delivery["last_error"]
    assert "not in ENCRYPTION_KEYS" in delivery["last_error"]


async def test_a_sealed_body_moved_to_another_row_does_not_open(
    engine: AsyncEngine, service_for: Any
) -> None:
    svc = await service_for(NEW)
    first, _ = await store(svc, "job-1")
    second, _ = await store(svc, "job-2")
    async with engine.begin() as conn:
        moved = sa.text(
            "UPDATE events SET raw_body = (SELECT raw_body FROM events WHERE id = :a) WHERE id = :b"
        )
        await conn.execute(moved, {"a": first, "b": second})

    async def read(session: AsyncSession) -> None:
        await event_store.opened_event(session, second, svc.db.sealer)

    with pytest.raises(SealedDataUnreadable, match="does not authenticate"):
        await svc.db.read(read)


class TestKeyCheck:
    async def test_the_first_start_registers_the_key_with_a_canary(
        self, engine: AsyncEngine
    ) -> None:
        db = database(engine, NEW)
        await db.write(lambda s: check_keys(s, db.sealer.keyring, now=T0))
        [row] = await raw_rows(engine, "encryption_keys")
        assert row["key_id"] == parse_key(NEW).id
        assert b"canary" not in as_bytes(row["canary"])
        # Idempotent: a second start (or a second process) changes nothing.
        await db.write(lambda s: check_keys(s, db.sealer.keyring, now=T0))
        assert await db.read(registered) == [parse_key(NEW).id]

    @pytest.mark.parametrize(
        ("keys", "message"),
        [
            ((), "ENCRYPTION_KEYS is not set, but stored data is sealed under key {old}"),
            ((NEW,), "stored data is sealed under key {old}, which is not among the keys given"),
        ],
        ids=["keys-removed", "wrong-key"],
    )
    async def test_a_start_without_the_key_is_refused_with_one_line(
        self, engine: AsyncEngine, keys: tuple[str, ...], message: str
    ) -> None:
        first = database(engine, OLD)
        await first.write(lambda s: check_keys(s, first.sealer.keyring, now=T0))
        later = database(engine, *keys)
        with pytest.raises(KeyCheckFailed) as caught:
            await later.write(lambda s: check_keys(s, later.sealer.keyring, now=T0))
        text = str(caught.value)
        assert message.format(old=parse_key(OLD).id) in text
        assert "\n" not in text
        assert OLD not in text
        assert NEW not in text
        # Nothing was registered by the refused start.
        assert await later.read(registered) == [parse_key(OLD).id]

    async def test_a_canary_that_does_not_open_is_refused(self, engine: AsyncEngine) -> None:
        db = database(engine, OLD)
        await db.write(lambda s: check_keys(s, db.sealer.keyring, now=T0))
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE encryption_keys SET canary = :c"), {"c": b"\x01" * 60}
            )
        with pytest.raises(KeyCheckFailed, match="does not open its canary"):
            await db.write(lambda s: check_keys(s, db.sealer.keyring, now=T0))

    async def test_a_new_first_key_with_the_old_one_after_it_starts(
        self, engine: AsyncEngine
    ) -> None:
        old = database(engine, OLD)
        await old.write(lambda s: check_keys(s, old.sealer.keyring, now=T0))
        both = database(engine, NEW, OLD)
        await both.write(lambda s: check_keys(s, both.sealer.keyring, now=T0))
        assert sorted(await both.read(registered)) == sorted([parse_key(NEW).id, parse_key(OLD).id])


async def stored_run(runs: StoredRuns, event_id: str, index: int, output: str | None) -> None:
    await runs.record(
        InferenceRun(
            delivery_id="dlv_1",
            prompt_index=index,
            event_id=event_id,
            job_id="job-1",
            route="smoke",
            model="ft-model-1",
            prompt=f"Summarize {MARKER} #{index}",
            status="succeeded" if output else "failed",
            output=output,
            tokens=3,
            latency_ms=12.0,
            error=None if output else "HTTP 500",
        )
    )


async def test_inference_prompts_and_outputs_are_sealed(
    engine: AsyncEngine, service_for: Any
) -> None:
    svc = await service_for(NEW)
    event_id, _ = await store(svc)
    runs = StoredRuns(svc.db, FakeClock(T0))
    await stored_run(runs, event_id, 0, f"The answer names {MARKER}")
    await stored_run(runs, event_id, 1, None)
    # A retry replaces the failed run; its row keeps its identity, so it still opens.
    await stored_run(runs, event_id, 1, "second try")
    for row in await raw_rows(engine, "inference_runs"):
        assert row["sealed_with"] == parse_key(NEW).id
        assert MARKER not in row["prompt"]
        assert MARKER not in (row["output"] or "")
        assert row["model"] == "ft-model-1"  # not sensitive, kept in clear
    found = await runs.of_delivery("dlv_1")
    assert found[0].output == f"The answer names {MARKER}"
    assert found[1].output == "second try"
    assert found[1].prompt == f"Summarize {MARKER} #1"
    listed = await svc.db.read(lambda s: runs_of_job(s, "job-1", svc.db.sealer))
    assert [stored.run.prompt for stored in listed] == [
        f"Summarize {MARKER} #0",
        f"Summarize {MARKER} #1",
    ]


class TestRotation:
    async def seed(self, service_for: Any) -> dict[str, bytes]:
        """Rows in clear, under OLD, a run and a submitted job under OLD; clear bodies by id."""
        bodies: dict[str, bytes] = {}
        clear = await service_for()
        for n in range(3):
            event_id, body = await store(clear, f"job-clear-{n}")
            bodies[event_id] = body
        old = await service_for(OLD)
        for n in range(4):
            event_id, body = await store(old, f"job-old-{n}")
            bodies[event_id] = body
        runs = StoredRuns(old.db, FakeClock(T0))
        await stored_run(runs, next(iter(bodies)), 0, "kept answer")
        submission = Submission("base", MARKER, "sft", {}, "job-key-1")
        await old.db.write(
            lambda s: jobs.create_submission(s, submission, now=T0, sealer=old.db.sealer)
        )
        return bodies

    async def dataset(self, db: Database) -> str | None:
        """The submitted job's dataset, as the service reads it."""

        async def read(session: AsyncSession) -> str | None:
            stmt = sa.select(JobRow).where(JobRow.idempotency_key == "job-key-1")
            row = (await session.scalars(stmt)).one()
            return open_dataset(db.sealer, row.id, row.dataset, row.sealed_with)

        return await db.read(read)

    async def reseal_all(self, db: Database, limit: int) -> int:
        done = 0
        for reseal in (reseal_events, reseal_runs, reseal_jobs):
            after: str | None = None
            while True:
                batch = await db.write(partial(reseal, sealer=db.sealer, after=after, limit=limit))
                if batch.last_id is None:
                    break
                done, after = done + batch.rows, batch.last_id
        return done

    async def test_rotation_reseals_everything_and_the_old_key_can_go(
        self, engine: AsyncEngine, service_for: Any
    ) -> None:
        bodies = await self.seed(service_for)
        both = database(engine, NEW, OLD)
        await both.write(lambda s: check_keys(s, both.sealer.keyring, now=T0))
        # 7 events, 1 run, 1 job (the jobs its events made have no dataset: nothing to seal).
        assert await both.read(lambda s: pending(s, parse_key(NEW).id)) == 9
        # Interrupted after one batch of two: nothing is lost, and the next run goes on.
        first = await both.write(lambda s: reseal_events(s, both.sealer, after=None, limit=2))
        assert first.rows == 2
        assert await both.read(lambda s: pending(s, parse_key(NEW).id)) == 7
        with pytest.raises(KeyCheckFailed, match="still sealed under an older key"):
            await both.write(lambda s: forget_keys_except(s, parse_key(NEW).id))
        assert await self.reseal_all(both, limit=2) == 7
        assert await both.read(lambda s: pending(s, parse_key(NEW).id)) == 0
        forgotten = await both.write(lambda s: forget_keys_except(s, parse_key(NEW).id))
        assert forgotten == [parse_key(OLD).id]

        only_new = database(engine, NEW)
        await only_new.write(lambda s: check_keys(s, only_new.sealer.keyring, now=T0))
        rows = await raw_rows(engine, "events")
        assert {row["sealed_with"] for row in rows} == {parse_key(NEW).id}

        async def read_all(session: AsyncSession) -> dict[str, bytes]:
            out = {}
            for event_id in bodies:
                opened = await event_store.opened_event(session, event_id, only_new.sealer)
                assert opened is not None
                out[event_id] = opened.raw_body
            return out

        assert await only_new.read(read_all) == bodies
        runs = await StoredRuns(only_new, FakeClock(T0)).of_delivery("dlv_1")
        assert runs[0].output == "kept answer"
        assert await self.dataset(only_new) == MARKER

    async def test_to_clear_writes_everything_back_and_forgets_every_key(
        self, engine: AsyncEngine, service_for: Any
    ) -> None:
        bodies = await self.seed(service_for)
        ring = keyring_from([OLD])
        to_clear = dataclasses.replace(
            single_engine_database(engine), sealer=Sealer(ring, seal_new=False)
        )
        # The 4 sealed events, the run and the job.
        assert await self.reseal_all(to_clear, limit=100) == 6
        assert await to_clear.write(lambda s: forget_keys_except(s, None)) == [parse_key(OLD).id]
        clear = database(engine)
        await clear.write(lambda s: check_keys(s, None, now=T0))  # no key needed any more
        for row in await raw_rows(engine, "events"):
            assert row["sealed_with"] is None
            assert as_bytes(row["raw_body"]) == bodies[row["id"]]
        assert await self.dataset(clear) == MARKER


async def test_a_run_replaced_during_rotation_keeps_the_newer_values(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL (SQLite's single writer cannot interleave): a retried inference replaces its
    run after rotation read it and before rotation writes it back; the stale reseal must not
    overwrite the newer prompt and output, and the row must still open."""
    engine = await emptied_engine(postgresql_url)
    try:
        old = database(engine, OLD)
        await old.write(lambda s: check_keys(s, old.sealer.keyring, now=T0))
        async with engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM inference_runs"))
        event_id = await old.write(lambda s: _seed_event(s))
        runs = StoredRuns(old, FakeClock(T0))
        await stored_run(runs, event_id, 0, None)  # failed, sealed under OLD

        rotating = database(engine, NEW, OLD)
        newer = StoredRuns(rotating, FakeClock(T0.replace(minute=5)))
        real_next_rows = rotation._next_rows

        async def racing(*args: Any, **kwargs: Any) -> Any:
            rows = await real_next_rows(*args, **kwargs)
            # Another process's retry lands now, committed on its own connection.
            await stored_run(newer, event_id, 0, "the retry's answer")
            return rows

        monkeypatch.setattr(rotation, "_next_rows", racing)
        batch = await rotating.write(
            lambda s: reseal_runs(s, rotating.sealer, after=None, limit=10)
        )
        assert batch.rows == 1
        found = await StoredRuns(database(engine, NEW), FakeClock(T0)).of_delivery("dlv_1")
        assert found[0].output == "the retry's answer"
        assert found[0].status == "succeeded"
    finally:
        await engine.dispose()
        await (await emptied_engine(postgresql_url)).dispose()  # no sealed rows left behind


async def _seed_event(session: AsyncSession) -> str:
    event_id = "evt_rotation_race"
    await session.execute(
        sa.insert(EventRow).values(**event_row(event_id, received_at=T0, job_id="job-1"))
    )
    return event_id
