"""Submitting fine-tunes to LLMTune with the job's own callback URL already registered.

The job row is written first (status `submitted`, an unguessable callback token, the idempotency
key), then LLMTune is asked, with that key as `Idempotency-Key`, then its job id is kept. So a
crash or an LLMTune error between the two leaves a row that says what happened, and a retry with
the same key reaches LLMTune with the same key: the fine-tune is created once whatever fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from service.clock import Clock
from service.llmtune.client import FineTuneRequest, LLMTuneClient
from service.llmtune.errors import LLMTuneError
from service.store import jobs
from service.store.db import Database
from service.store.jobs import StoredJob, Submission

log = structlog.get_logger(__name__)
CALLBACK_PATH = "/webhooks/llmtune/jobs/"


class JobsDisabled(Exception):
    """No LLMTune API key is configured, so nothing can be submitted or polled."""


class SubmitFailed(Exception):
    """LLMTune refused or could not be reached; the job row keeps the error."""

    def __init__(self, job: StoredJob, cause: LLMTuneError) -> None:
        super().__init__(cause.message)
        self.job = job
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Submitted:
    """The job, and whether this call created it (False: a repeat of a known idempotency key)."""

    job: StoredJob
    created: bool


def callback_url(public_url: str, token: str) -> str:
    """The per-job webhook URL LLMTune is given for a job."""
    return f"{public_url.rstrip('/')}{CALLBACK_PATH}{token}"


class Submissions:
    """Creates job rows and submits them to LLMTune."""

    def __init__(
        self, db: Database, client: LLMTuneClient | None, *, clock: Clock, public_url: str
    ) -> None:
        self._db = db
        self._client = client
        self._clock = clock
        self._public_url = public_url

    async def submit(self, submission: Submission) -> Submitted:
        """Submit once per idempotency key; raise `SubmitFailed` (row kept) or `JobsDisabled`."""
        if self._client is None:
            raise JobsDisabled("LLMTUNE_API_KEY is not set")
        now = self._clock.now()
        row, created = await self._db.write(
            lambda session: jobs.create_submission(
                session, submission, now=now, sealer=self._db.sealer
            )
        )
        if row.llmtune_job_id is not None:
            return Submitted(row, created)  # LLMTune has it already: call nothing
        assert row.callback_token is not None  # noqa: S101 - every submitted row has one
        request = FineTuneRequest(
            base_model=row.base_model or submission.base_model,
            dataset=row.dataset or submission.dataset,
            training_method=row.training_method or submission.training_method,
            hyperparameters=row.params or {},
            webhook_url=callback_url(self._public_url, row.callback_token),
        )
        assert row.idempotency_key is not None  # noqa: S101 - set when the row is created
        try:
            answer = await self._client.submit_fine_tune(
                request, idempotency_key=row.idempotency_key
            )
        except LLMTuneError as exc:
            error = f"{exc.status or 'unreachable'} {exc.code}: {exc.message}"
            log.warning("job_submit_failed", job_id=row.id, status=exc.status, code=exc.code)
            await self._db.write(lambda session: jobs.record_submit_error(session, row.id, error))
            raise SubmitFailed(await self._reload(row.id), exc) from exc
        await self._db.write(
            lambda session: jobs.record_accepted(
                session, row.id, llmtune_job_id=answer.job_id, now=self._clock.now()
            )
        )
        log.info("job_submitted", job_id=row.id, llmtune_job_id=answer.job_id)
        return Submitted(await self._reload(row.id), created)

    async def _reload(self, job_id: str) -> StoredJob:
        async def read(session: AsyncSession) -> StoredJob:
            found = await jobs.get_job(session, job_id, sealer=self._db.sealer)
            assert found is not None  # noqa: S101 - we have just written it
            return found

        # The writer's engine: on SQLite a reader could still see the snapshot from before.
        return await self._db.write(read)
