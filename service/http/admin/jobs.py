"""Admin API for jobs: submit a fine-tune, list jobs, one job's timeline, poll a job now."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from service.http.admin import schemas, shapes
from service.http.admin.audit import audit_target
from service.http.admin.endpoint import AdminRoute, page_body, parsed_query
from service.http.admin.params import Paged, Time
from service.http.errors import ApiError, Conflict, InvalidParameter, NotFound
from service.http.responses import JSONResponse
from service.job_status import JobStatus
from service.jobs.submit import JobsDisabled, SubmitFailed, callback_url
from service.llmtune.errors import LLMTuneError
from service.services import Services
from service.store import deliveries, events, inference_runs, jobs
from service.store.jobs import PollDue, StoredJob, Submission

# Shown instead of a job's callback token to a read-scoped caller.
REDACTED_TOKEN = "{token}"  # noqa: S105 - a placeholder, not a secret

MAX_JOB_KEY = 200


class JobsQuery(Paged):
    """`GET /admin/jobs`."""

    scope: ClassVar[str] = "jobs"
    status: JobStatus | None = Field(None, description="the job's state")
    since: Time | None = Field(None, description="only rows created at or after this time")
    until: Time | None = Field(None, description="only rows created before this time")


# PostgreSQL refuses NUL in text: a 400 naming the field, not a 503 from the store.
NO_NUL = r"^[^\x00]*$"
# The idempotency key is sent to LLMTune as a header: printable ASCII, no space at either end.
HEADER_VALUE = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"


class Hyperparameters(BaseModel):
    """The documented knobs; anything else is refused rather than silently dropped."""

    model_config = ConfigDict(extra="forbid")

    learningRate: float | None = Field(default=None, gt=0, le=1)
    epochs: int | None = Field(default=None, ge=1, le=100)
    batchSize: int | None = Field(default=None, ge=1, le=65536)


class JobRequest(BaseModel):
    """`POST /admin/jobs` body, in LLMTune's own field names."""

    model_config = ConfigDict(extra="forbid")

    baseModel: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    dataset: str = Field(min_length=1, max_length=2000, pattern=NO_NUL)
    trainingMethod: str = Field(default="sft", min_length=1, max_length=40, pattern=NO_NUL)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    idempotencyKey: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=HEADER_VALUE
    )


class JobsUnavailable(ApiError):
    status, code = 503, "JOBS_DISABLED"


class UpstreamFailed(ApiError):
    """LLMTune refused the submission or could not be reached; the status says which."""

    def __init__(self, failure: SubmitFailed) -> None:
        cause = failure.cause
        super().__init__(
            f"LLMTune: {cause.message}",
            details={
                "jobId": failure.job.id,
                "llmtuneStatus": cause.status,
                "llmtuneCode": cause.code,
            },
        )
        self.status = _status_for(cause)
        self.code = cause.code or "LLMTUNE_ERROR"
        self._retry_after = cause.retry_after

    def headers(self) -> dict[str, str]:
        """`Retry-After` when LLMTune gave one (a 429 passed on as 503)."""
        if self._retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self._retry_after)))}


def _status_for(cause: LLMTuneError) -> int:
    # The caller's own mistakes keep their status (400, 402, 404); ours and LLMTune's become
    # 502 (it answered wrongly, or our key is refused) or 503 (try again later).
    if cause.status in (400, 402, 404):
        return cause.status
    if cause.status == 429 or cause.status is None:
        return 503
    return 502


async def create_job(request: Request, svc: Services) -> Response:
    """Submit a fine-tune: 201 with the job; 200 with the same job for a known idempotency key."""
    try:
        body = JobRequest.model_validate(orjson.loads(await request.body() or b"null"))
    except orjson.JSONDecodeError:
        raise InvalidParameter("the body must be a JSON object") from None
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(part) for part in error["loc"]), "problem": error["msg"]}
            for error in exc.errors()
        ]
        raise InvalidParameter(
            "the job request is not valid", details={"problems": problems}
        ) from None
    submission = Submission(
        base_model=body.baseModel,
        dataset=body.dataset,
        training_method=body.trainingMethod,
        params=body.hyperparameters.model_dump(exclude_none=True),
        idempotency_key=body.idempotencyKey,
    )
    try:
        submitted = await svc.submissions.submit(submission)
    except JobsDisabled as exc:
        raise JobsUnavailable(f"jobs are disabled: {exc}") from None
    except SubmitFailed as failure:
        audit_target(request, job_id=failure.job.id)
        raise UpstreamFailed(failure) from None
    audit_target(request, job_id=submitted.job.id, created=submitted.created)
    view = _job_view(svc, submitted.job, reveal=True)  # submitting takes the write scope
    return JSONResponse(view, status_code=201 if submitted.created else 200)


def _job_view(svc: Services, row: StoredJob, *, reveal: bool) -> dict[str, Any]:
    view = schemas.job_summary(row)
    if row.callback_token is not None:
        # The token in the URL is a credential: a read-scoped caller sees where it goes only.
        token = row.callback_token if reveal else REDACTED_TOKEN
        view["webhookUrl"] = callback_url(svc.settings.public_url, token)
    return view


async def list_jobs(request: Request, svc: Services) -> dict[str, Any]:
    """Jobs, newest first, filtered by status, since, until (when created)."""
    query = parsed_query(request, JobsQuery)
    page = await svc.db.read(
        lambda session: jobs.list_jobs(
            session,
            sealer=svc.db.sealer,
            status=query.status,
            since=query.since,
            until=query.until,
            limit=query.limit,
            cursor=query.after,
        )
    )
    return page_body(page, schemas.job_summary, query)


def _job_key(request: Request) -> str:
    key: str = request.path_params["job_id"]
    # Our id or LLMTune's; never a query for something that cannot be either.
    if not key or len(key) > MAX_JOB_KEY or "\x00" in key:
        raise NotFound(f"no job {key[:64]!r}")
    return key


async def get_job(request: Request, svc: Services) -> dict[str, Any]:
    """One job (by our id or LLMTune's) with every event, delivery and inference run."""
    key = _job_key(request)

    async def read(session: AsyncSession) -> dict[str, Any]:
        row = await jobs.find_job(session, key, sealer=svc.db.sealer)
        if row is None:
            raise NotFound(f"no job {key[:64]!r}")
        timeline = (
            await events.events_of_job(session, row.llmtune_job_id)
            if row.llmtune_job_id is not None
            else []
        )
        rows = await deliveries.deliveries_of(session, [event.id for event in timeline])
        runs = (
            await inference_runs.runs_of_job(session, row.llmtune_job_id, svc.db.sealer)
            if row.llmtune_job_id is not None
            else []
        )
        return {
            **_job_view(svc, row, reveal=request.state.admin_token.can_write),
            "timeline": schemas.job_timeline(row, timeline, rows, runs),
            "events": [schemas.event_summary(event) for event in timeline],
            "deliveries": [schemas.delivery_view(d) for d in rows],
            "inferenceRuns": [schemas.inference_run_view(run) for run in runs],
        }

    return await svc.db.read(read)


async def refresh_job(request: Request, svc: Services) -> dict[str, Any]:
    """Poll LLMTune about this job now; the job as it stands afterwards."""
    key = _job_key(request)
    audit_target(request, job=key)
    if svc.reconciler is None:
        raise JobsUnavailable("jobs are disabled: LLMTUNE_API_KEY is not set")
    row = await svc.db.read(lambda session: jobs.find_job(session, key, sealer=svc.db.sealer))
    if row is None:
        raise NotFound(f"no job {key[:64]!r}")
    if row.llmtune_job_id is None:
        raise Conflict("LLMTune has not accepted this job yet; submit it again to retry")
    await svc.reconciler.poll(PollDue(row.id, row.llmtune_job_id, row.status, row.poll_failures))
    return await get_job(request, svc)


ROUTES: list[BaseRoute] = [
    AdminRoute("/admin/jobs", list_jobs, query=JobsQuery, response=shapes.JobSummary),
    AdminRoute(
        "/admin/jobs",
        create_job,
        method="POST",
        body=JobRequest,
        response=shapes.JobSummary,
        action="job.submit",
        status=201,
    ),
    AdminRoute("/admin/jobs/{job_id}", get_job, response=shapes.JobDetail),
    AdminRoute(
        "/admin/jobs/{job_id}/refresh",
        refresh_job,
        method="POST",
        response=shapes.JobDetail,
        action="job.refresh",
    ),
]
