"""The jobs table: submissions, polls and admin queries.

Events advance jobs in `store/job_moves.py`, by the moves ingest decided, never by
read-then-write, so two racing events for one job cannot move it backwards. Reads answer in
`StoredJob` values, the dataset already opened.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.ids import new_id
from service.job_status import JOB_TIMES, RANK
from service.store.dialect import insert_for
from service.store.paging import Page, fetch_page
from service.store.sealing import PLAINTEXT, Sealer, dataset_context, open_dataset
from service.store.tables import JOBS, JobRow


@dataclass(frozen=True, slots=True)
class StoredJob:
    """A job as stored, its dataset opened."""

    id: str
    llmtune_job_id: str | None
    status: str
    idempotency_key: str | None
    callback_token: str | None
    dataset: str | None
    training_method: str | None
    params: dict[str, Any] | None
    submit_error: str | None
    submitted_at: datetime | None
    last_polled_at: datetime | None
    next_poll_at: datetime | None
    poll_failures: int
    base_model: str | None
    artifact: str | None
    deployment_id: str | None
    metrics: dict[str, Any] | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    deployed_at: datetime | None
    created_at: datetime
    updated_at: datetime


def stored_job(row: JobRow, sealer: Sealer) -> StoredJob:
    """The plain value of a jobs row; `SealedDataUnreadable` when its dataset cannot be opened."""
    return StoredJob(
        id=row.id,
        llmtune_job_id=row.llmtune_job_id,
        status=row.status,
        idempotency_key=row.idempotency_key,
        callback_token=row.callback_token,
        dataset=open_dataset(sealer, row.id, row.dataset, row.sealed_with),
        training_method=row.training_method,
        params=row.params,
        submit_error=row.submit_error,
        submitted_at=row.submitted_at,
        last_polled_at=row.last_polled_at,
        next_poll_at=row.next_poll_at,
        poll_failures=row.poll_failures,
        base_model=row.base_model,
        artifact=row.artifact,
        deployment_id=row.deployment_id,
        metrics=row.metrics,
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
        deployed_at=row.deployed_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def list_jobs(
    session: AsyncSession,
    *,
    sealer: Sealer,
    status: str | None,
    limit: int,
    cursor: tuple[datetime, str] | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[StoredJob]:
    """Newest first by (created_at, id); `since` inclusive, `until` exclusive."""
    stmt = sa.select(JobRow)
    if status is not None:
        stmt = stmt.where(JobRow.status == status)
    if since is not None:
        stmt = stmt.where(JobRow.created_at >= since)
    if until is not None:
        stmt = stmt.where(JobRow.created_at < until)
    page = await fetch_page(
        session, stmt, time_col=JobRow.created_at, id_col=JobRow.id, limit=limit, cursor=cursor
    )
    return page.map(lambda row: stored_job(row, sealer))


async def get_job(session: AsyncSession, job_id: str, *, sealer: Sealer) -> StoredJob | None:
    """One job by our own id, or None."""
    row = await session.get(JobRow, job_id)
    return None if row is None else stored_job(row, sealer)


async def find_job(session: AsyncSession, key: str, *, sealer: Sealer) -> StoredJob | None:
    """A job by our own id or by its LLMTune job id."""
    found = await session.get(JobRow, key)
    if found is None:
        found = (
            await session.scalars(sa.select(JobRow).where(JobRow.llmtune_job_id == key))
        ).one_or_none()
    return None if found is None else stored_job(found, sealer)


async def job_by_token(session: AsyncSession, token: str, *, sealer: Sealer) -> StoredJob | None:
    """The job whose callback URL carries `token`, or None."""
    row = (
        await session.scalars(sa.select(JobRow).where(JobRow.callback_token == token))
    ).one_or_none()
    return None if row is None else stored_job(row, sealer)


@dataclass(frozen=True, slots=True)
class Submission:
    """A job as the caller asked for it, before LLMTune has seen it."""

    base_model: str
    dataset: str
    training_method: str
    params: dict[str, Any]
    idempotency_key: str | None


async def create_submission(
    session: AsyncSession, submission: Submission, *, now: datetime, sealer: Sealer = PLAINTEXT
) -> tuple[StoredJob, bool]:
    """The `submitted` job for `submission`, created unless its idempotency key is known
    (race-safe: the unique index decides). Returns (job, created)."""
    job_id = new_id("job")
    inserted = await session.execute(
        insert_for(session, JOBS)
        .values(
            id=job_id,
            llmtune_job_id=None,
            status="submitted",
            base_model=submission.base_model,
            dataset=sealer.seal_text(submission.dataset, dataset_context(job_id)),
            sealed_with=sealer.key_id,
            training_method=submission.training_method,
            params=submission.params,
            # The key LLMTune sees is the caller's, else our own id: a retried submission can
            # never create a second fine-tune.
            idempotency_key=submission.idempotency_key or job_id,
            callback_token=secrets.token_urlsafe(24),
            submitted_at=now,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[JOBS.c.idempotency_key])
        .returning(JOBS.c.id)
    )
    created = inserted.scalar_one_or_none() is not None
    key = submission.idempotency_key or job_id
    row = (await session.scalars(sa.select(JobRow).where(JobRow.idempotency_key == key))).one()
    return stored_job(row, sealer), created


async def record_accepted(
    session: AsyncSession, job_id: str, *, llmtune_job_id: str, now: datetime
) -> None:
    """LLMTune accepted job `job_id` as `llmtune_job_id`. A webhook may have raced the answer
    and made a row of its own for that id: its progress is folded into ours and it goes."""
    early = (
        await session.scalars(
            sa.select(JobRow).where(JobRow.llmtune_job_id == llmtune_job_id, JobRow.id != job_id)
        )
    ).one_or_none()
    values: dict[str, Any] = {
        "llmtune_job_id": llmtune_job_id,
        "submit_error": None,
        "updated_at": now,
        "status": sa.case((_rank() < RANK["pending"], "pending"), else_=JOBS.c.status),
    }
    if early is not None:
        await session.execute(sa.delete(JOBS).where(JOBS.c.id == early.id))
        if RANK.get(early.status, -1) >= RANK["pending"]:
            values["status"] = early.status
        for name in ("artifact", "deployment_id", "metrics", "error", *JOB_TIMES):
            if getattr(early, name) is not None:
                values[name] = getattr(early, name)
    await session.execute(sa.update(JOBS).where(JOBS.c.id == job_id).values(values))


async def record_submit_error(session: AsyncSession, job_id: str, error: str) -> None:
    """LLMTune did not take the job (yet): keep why, leave it `submitted`."""
    await session.execute(
        sa.update(JOBS).where(JOBS.c.id == job_id).values(submit_error=error[:2000])
    )


_OPEN = ("submitted", "pending", "running")
# A completed job can still be deployed, so a doorbell may ask about it; these are final.
_FINAL = ("failed", "deployed")


def _rank() -> sa.ColumnElement[int]:
    return sa.case(RANK, value=JOBS.c.status, else_=-1)


@dataclass(frozen=True, slots=True)
class PollDue:
    """A job the reconciler should ask LLMTune about."""

    id: str
    llmtune_job_id: str
    status: str
    poll_failures: int


async def claim_polls(
    session: AsyncSession, *, now: datetime, quiet_since: datetime, lease: timedelta, limit: int
) -> list[PollDue]:
    """Jobs still open, accepted by LLMTune, and due a poll: never polled and unchanged since
    `quiet_since`, or past their `next_poll_at`. Each is leased (`next_poll_at` moved by `lease`)
    so another worker does not poll it too."""
    due = sa.or_(
        sa.and_(JOBS.c.next_poll_at.is_(None), JOBS.c.updated_at <= quiet_since),
        JOBS.c.next_poll_at <= now,
    )
    pick = (
        sa.select(JOBS.c.id)
        .where(JOBS.c.status.in_(_OPEN), JOBS.c.llmtune_job_id.is_not(None), due)
        .order_by(JOBS.c.updated_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    rows = await session.execute(
        sa.update(JOBS)
        .where(JOBS.c.id.in_(pick.scalar_subquery()))
        .values(next_poll_at=now + lease)
        .returning(JOBS.c.id, JOBS.c.llmtune_job_id, JOBS.c.status, JOBS.c.poll_failures)
    )
    return [PollDue(*row) for row in rows]


async def claim_doorbell_poll(
    session: AsyncSession, job_id: str, *, now: datetime, every: timedelta, lease: timedelta
) -> PollDue | None:
    """Job `job_id`, leased for a poll now, unless it was polled less than `every` ago, is not
    known to LLMTune yet, or can no longer change. One conditional UPDATE: two doorbells racing
    for one job cannot both win, on any number of processes."""
    rows = await session.execute(
        sa.update(JOBS)
        .where(
            JOBS.c.id == job_id,
            JOBS.c.llmtune_job_id.is_not(None),
            JOBS.c.status.not_in(_FINAL),
            sa.or_(JOBS.c.last_polled_at.is_(None), JOBS.c.last_polled_at <= now - every),
        )
        # Marked as polled now, so the next doorbell waits `every`; leased like any claimed
        # poll, so a process that dies mid-poll leaves it to the reconciler after `lease`.
        .values(last_polled_at=now, next_poll_at=now + lease)
        .returning(JOBS.c.id, JOBS.c.llmtune_job_id, JOBS.c.status, JOBS.c.poll_failures)
    )
    row = rows.one_or_none()
    return None if row is None else PollDue(*row)


async def record_poll(
    session: AsyncSession, job_id: str, *, now: datetime, next_at: datetime, failed: bool
) -> None:
    """A poll happened: when, when the next is due, and whether it got nothing new."""
    failures = JOBS.c.poll_failures + 1 if failed else 0
    await session.execute(
        sa.update(JOBS)
        .where(JOBS.c.id == job_id)
        .values(last_polled_at=now, next_poll_at=next_at, poll_failures=failures)
    )
