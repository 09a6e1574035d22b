"""Job rows for our own submissions, and the reconciler's poll schedule, on both databases."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.store import jobs
from service.store.jobs import Submission
from service.store.tables import JobRow
from service.store.writer import IngestWriter
from tests.helpers import T0, lifecycle, new_event, single_engine_database

SUBMISSION = Submission(
    base_model="meta-llama/Llama-3.3-70B-Instruct",
    dataset="s3://bucket/data.jsonl",
    training_method="sft",
    params={"epochs": 3},
    idempotency_key="key-1",
)


async def all_jobs(engine: AsyncEngine) -> list[JobRow]:
    async with AsyncSession(engine) as session:
        return list((await session.scalars(sa.select(JobRow).order_by(JobRow.id))).all())


async def test_a_known_idempotency_key_returns_the_first_job(engine: AsyncEngine) -> None:
    """The second submission with a key gets the first row back and creates nothing."""
    db = single_engine_database(engine)
    first, created = await db.write(lambda s: jobs.create_submission(s, SUBMISSION, now=T0))
    again, created_again = await db.write(
        lambda s: jobs.create_submission(s, SUBMISSION, now=T0 + timedelta(minutes=1))
    )
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert first.status == "submitted"
    assert len(first.callback_token or "") >= 32
    assert len(await all_jobs(engine)) == 1


async def test_without_a_key_the_job_id_is_the_key(engine: AsyncEngine) -> None:
    """A submission without a key is keyed by its own id (what LLMTune gets as Idempotency-Key),
    and two such submissions are two jobs."""
    db = single_engine_database(engine)
    bare = Submission("base", "s3://d", "sft", {}, None)
    one, _ = await db.write(lambda s: jobs.create_submission(s, bare, now=T0))
    two, _ = await db.write(lambda s: jobs.create_submission(s, bare, now=T0))
    assert one.idempotency_key == one.id
    assert two.id != one.id


async def test_accepted_job_takes_the_llmtune_id_and_moves_to_pending(engine: AsyncEngine) -> None:
    """LLMTune's answer fills the id and moves `submitted` to `pending`; an error is cleared."""
    db = single_engine_database(engine)
    row, _ = await db.write(lambda s: jobs.create_submission(s, SUBMISSION, now=T0))
    await db.write(lambda s: jobs.record_submit_error(s, row.id, "503 UNAVAILABLE: later"))
    [failed] = await all_jobs(engine)
    assert (failed.status, failed.submit_error) == ("submitted", "503 UNAVAILABLE: later")
    await db.write(lambda s: jobs.record_accepted(s, row.id, llmtune_job_id="ft-1", now=T0))
    [job] = await all_jobs(engine)
    assert (job.llmtune_job_id, job.status, job.submit_error) == ("ft-1", "pending", None)


async def test_a_webhook_faster_than_the_answer_is_folded_in(engine: AsyncEngine) -> None:
    """A webhook that arrived before LLMTune's answer was recorded made a row of its own for the
    LLMTune id; recording the answer keeps one row, ours, with the webhook's progress."""
    db = single_engine_database(engine)
    row, _ = await db.write(lambda s: jobs.create_submission(s, SUBMISSION, now=T0))
    writer = IngestWriter(db)
    async with writer.running():
        await writer.write(new_event(lifecycle("training.started", job="ft-9"), routes=()))
    assert len(await all_jobs(engine)) == 2
    await db.write(lambda s: jobs.record_accepted(s, row.id, llmtune_job_id="ft-9", now=T0))
    [job] = await all_jobs(engine)
    assert (job.id, job.llmtune_job_id, job.status) == (row.id, "ft-9", "running")
    assert job.started_at is not None


async def test_polls_are_due_after_quiet_and_leased(engine: AsyncEngine) -> None:
    """Open, accepted jobs quiet since the cut-off are due once (leased); terminal jobs, jobs
    LLMTune has not accepted and recently changed jobs are not."""
    db = single_engine_database(engine)
    quiet, _ = await db.write(lambda s: jobs.create_submission(s, SUBMISSION, now=T0))
    await db.write(lambda s: jobs.record_accepted(s, quiet.id, llmtune_job_id="ft-q", now=T0))
    unaccepted = Submission("base", "s3://d", "sft", {}, "key-2")
    await db.write(lambda s: jobs.create_submission(s, unaccepted, now=T0))
    writer = IngestWriter(db)
    async with writer.running():
        await writer.write(
            new_event(lifecycle("training.completed", job="ft-done"), at=T0, routes=())
        )
        await writer.write(
            new_event(
                lifecycle("training.started", job="ft-busy"), at=T0 + timedelta(hours=1), routes=()
            )
        )
    now = T0 + timedelta(hours=1, minutes=5)

    async def claim() -> list[str]:
        due = await db.write(
            lambda s: jobs.claim_polls(
                s,
                now=now,
                quiet_since=now - timedelta(minutes=10),
                lease=timedelta(minutes=2),
                limit=10,
            )
        )
        return [d.llmtune_job_id for d in due]

    assert await claim() == ["ft-q"]
    assert await claim() == []  # leased
    [job] = [j for j in await all_jobs(engine) if j.llmtune_job_id == "ft-q"]
    await db.write(
        lambda s: jobs.record_poll(
            s, job.id, now=now, next_at=now - timedelta(seconds=1), failed=True
        )
    )
    assert await claim() == ["ft-q"]  # its next poll is due
    [polled] = [j for j in await all_jobs(engine) if j.llmtune_job_id == "ft-q"]
    assert (polled.last_polled_at, polled.poll_failures) == (now, 1)


async def test_a_doorbell_polls_a_job_at_most_once_every_few_seconds(engine: AsyncEngine) -> None:
    """An unsigned callback's poll: leased at once, then not again within `every`, never for a
    job LLMTune has not accepted or one that can no longer change."""
    db = single_engine_database(engine)
    row, _ = await db.write(lambda s: jobs.create_submission(s, SUBMISSION, now=T0))
    unaccepted, _ = await db.write(
        lambda s: jobs.create_submission(s, Submission("b", "s3://d", "sft", {}, "k-2"), now=T0)
    )
    every, lease = timedelta(seconds=5), timedelta(minutes=2)

    async def ring(job_id: str, at: timedelta) -> str | None:
        due = await db.write(
            lambda s: jobs.claim_doorbell_poll(s, job_id, now=T0 + at, every=every, lease=lease)
        )
        return None if due is None else due.llmtune_job_id

    assert await ring(row.id, timedelta(0)) is None  # LLMTune has not answered yet
    await db.write(lambda s: jobs.record_accepted(s, row.id, llmtune_job_id="ft-d", now=T0))
    assert await ring(row.id, timedelta(0)) == "ft-d"
    assert await ring(row.id, timedelta(seconds=4)) is None
    [claimed] = [j for j in await all_jobs(engine) if j.id == row.id]
    assert (claimed.last_polled_at, claimed.next_poll_at) == (T0, T0 + lease)
    assert await ring(row.id, timedelta(seconds=5)) == "ft-d"
    assert await ring(unaccepted.id, timedelta(seconds=9)) is None
    async with engine.begin() as conn:
        await conn.execute(sa.update(JobRow).where(JobRow.id == row.id).values(status="deployed"))
    assert await ring(row.id, timedelta(minutes=1)) is None
