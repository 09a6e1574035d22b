"""The inference run store on SQLite and PostgreSQL: record, replace, read back by delivery and by
job, and what an unreachable store raises."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.clock import FakeClock, SystemClock
from service.ids import new_id
from service.ports import InferenceRun, MemoryUnavailable
from service.store.db import Database, open_database
from service.store.inference_runs import RunsUnavailable, StoredRuns, runs_of_job
from service.store.tables import EventRow
from tests.helpers import event_row, join_sqlite_threads, single_engine_database

T0 = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)


async def stored_event(db: Database, job_id: str | None = "job-1") -> str:
    """The id of a newly stored `training.completed` event of `job_id` (runs refer to one)."""
    event_id = new_id("evt")

    async def write(session: Any) -> None:
        session.add(EventRow(**event_row(event_id, received_at=T0, job_id=job_id)))

    await db.write(write)
    return event_id


def a_run(event_id: str, index: int = 0, **values: Any) -> InferenceRun:
    """A succeeded run of prompt `index` of delivery `dlv_1`; `values` override fields."""
    fields: dict[str, Any] = {
        "delivery_id": "dlv_1",
        "prompt_index": index,
        "event_id": event_id,
        "job_id": "job-1",
        "route": "smoke",
        "model": "ft-model-1",
        "prompt": f"prompt {index}",
        "status": "succeeded",
        "output": f"answer {index}",
        "tokens": 12,
        "latency_ms": 234.0,
    }
    return InferenceRun(**(fields | values))


@pytest.fixture
def db(engine: AsyncEngine) -> Database:
    return single_engine_database(engine)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def runs(db: Database, clock: FakeClock) -> StoredRuns:
    return StoredRuns(db, clock)


async def test_recorded_runs_read_back_by_delivery(db: Database, runs: StoredRuns) -> None:
    """Each recorded run comes back, whole, under its prompt index; other deliveries apart."""
    event_id = await stored_event(db)
    first = a_run(event_id, 0)
    second = a_run(event_id, 1, status="failed", output=None, tokens=None, error="HTTP 429")
    other = a_run(event_id, 0, delivery_id="dlv_2")
    for run in (first, second, other):
        await runs.record(run)
    assert await runs.of_delivery("dlv_1") == {0: first, 1: second}
    assert await runs.of_delivery("dlv_2") == {0: other}
    assert await runs.of_delivery("dlv_none") == {}


async def test_a_later_run_replaces_a_failed_one(db: Database, runs: StoredRuns) -> None:
    """Recording the same (delivery, prompt) again replaces the row instead of adding one."""
    event_id = await stored_event(db)
    await runs.record(a_run(event_id, status="failed", output=None, error="HTTP 503"))
    succeeded = a_run(event_id, output="fine now", tokens=5)
    await runs.record(succeeded)
    assert await runs.of_delivery("dlv_1") == {0: succeeded}


async def test_a_success_is_not_replaced_by_a_failure(db: Database, runs: StoredRuns) -> None:
    """An overlapping attempt's failure cannot erase a prompt that was answered (and paid)."""
    event_id = await stored_event(db)
    succeeded = a_run(event_id)
    await runs.record(succeeded)
    await runs.record(a_run(event_id, status="failed", output=None, error="HTTP 500"))
    assert await runs.of_delivery("dlv_1") == {0: succeeded}


async def test_concurrent_records_keep_one_row(db: Database, runs: StoredRuns) -> None:
    """Racing records of one (delivery, prompt) never collide: one row, no error."""
    event_id = await stored_event(db)
    await asyncio.gather(*(runs.record(a_run(event_id, tokens=n)) for n in range(5)))
    [(index, run)] = (await runs.of_delivery("dlv_1")).items()
    assert index == 0
    assert run.tokens in range(5)


async def test_text_is_made_storable(db: Database, runs: StoredRuns) -> None:
    """NUL characters (which PostgreSQL refuses) are replaced; long errors are clipped."""
    event_id = await stored_event(db)
    await runs.record(
        a_run(event_id, output="a\x00b", status="failed", error="e" * 5000, prompt="p\x00")
    )
    run = (await runs.of_delivery("dlv_1"))[0]
    assert (run.output, run.prompt) == ("a\ufffdb", "p\ufffd")
    assert run.error == "e" * 2000


async def test_runs_of_job_oldest_first(db: Database, runs: StoredRuns, clock: FakeClock) -> None:
    """A job's runs come in the order they were last run; other jobs' runs are not included."""
    event_id = await stored_event(db, "job-1")
    other_event = await stored_event(db, "job-2")
    await runs.record(a_run(event_id, 1, status="failed", output=None, error="HTTP 429"))
    clock.advance(timedelta(seconds=1))
    await runs.record(a_run(event_id, 0))
    await runs.record(a_run(other_event, 0, delivery_id="dlv_2", job_id="job-2"))
    clock.advance(timedelta(seconds=1))
    await runs.record(a_run(event_id, 1))  # the retry of prompt 1, now answered

    async def read(session: Any) -> list[tuple[int, str, datetime]]:
        rows = await runs_of_job(session, "job-1")
        return [(row.run.prompt_index, row.run.status, row.created_at) for row in rows]

    assert await db.read(read) == [
        (0, "succeeded", T0 + timedelta(seconds=1)),
        (1, "succeeded", T0 + timedelta(seconds=2)),
    ]


async def test_runs_go_with_their_event(db: Database, runs: StoredRuns) -> None:
    """Deleting (purging) an event deletes its runs."""
    event_id = await stored_event(db)
    await runs.record(a_run(event_id))

    async def purge(session: Any) -> None:
        await session.delete(await session.get(EventRow, event_id))

    await db.write(purge)
    assert await runs.of_delivery("dlv_1") == {}


async def test_unreachable_store_raises_runs_unavailable(tmp_path: Path) -> None:
    """A store that cannot be opened raises `RunsUnavailable`, a kind of `MemoryUnavailable`."""
    db = open_database(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db")
    runs = StoredRuns(db, SystemClock())
    try:
        with pytest.raises(RunsUnavailable):
            await runs.of_delivery("dlv_1")
        with pytest.raises(MemoryUnavailable):
            await runs.record(a_run("evt_1"))
    finally:
        await db.aclose()
        await asyncio.to_thread(join_sqlite_threads)
