"""The one state object of a fake LLMTune: its jobs, switches, remembered answers and recorded
traffic, plus the background pieces (the step ticker and the webhook sender).

`create_fake_app` makes one per app; nothing lives at module level. The decisions are made by
the pure modules (`jobs`, `switches`); this module applies them and does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from service.clock import Clock
from service.fake_llmtune.jobs import Job, Step, advance, is_due, iso_millis, next_due, w3_body
from service.fake_llmtune.sender import Sender, Sleep, Webhook
from service.fake_llmtune.switches import Failure, Switches, plan_sends, take_failure
from service.webhooks.samples import signed_delivery

# How often the ticker looks for due jobs; the step itself is config.step_seconds.
TICK_SECONDS = 0.05
INBOX_LIMIT = 1000
# Request headers worth recording (Authorization only as present/absent: it is a secret).
RECORDED_HEADERS = ("content-type", "idempotency-key", "user-agent")


@dataclass(frozen=True, slots=True)
class FakeConfig:
    """How a fake LLMTune starts."""

    secret: str
    step_seconds: float = 1.0
    workspace_url: str | None = None
    api_key: str | None = None
    switches: Switches = field(default_factory=Switches)
    webhook_attempts: int = 5
    retry_base_seconds: float = 1.0
    webhook_timeout_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class Answer:
    """An API answer before it becomes an HTTP response."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class FakeLLMTune:
    """Everything one fake LLMTune holds; routes reach it as `request.app.state.fake`."""

    def __init__(self, config: FakeConfig, *, clock: Clock, sleep: Sleep) -> None:
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.switches = config.switches
        self.jobs: dict[str, Job] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []
        # What was POSTed to /_fake/inbox: a stand-in destination for the receiver's forwards.
        self.inbox: deque[dict[str, Any]] = deque(maxlen=INBOX_LIMIT)
        self.sender = Sender(
            clock=clock,
            sleep=sleep,
            attempts=config.webhook_attempts,
            base_delay=config.retry_base_seconds,
            timeout=config.webhook_timeout_seconds,
        )
        self._held: dict[str, tuple[Webhook, ...]] = {}
        self._answers: dict[tuple[str, str], Answer] = {}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the sender and the step ticker for the app's lifetime."""
        async with self.sender.running():
            ticker = asyncio.create_task(self._tick())
            try:
                yield
            finally:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker

    async def _tick(self) -> None:
        # Polls the (possibly fake) clock with real sleeps, so a test can move a FakeClock.
        if self.config.step_seconds <= 0:
            return
        while True:
            await asyncio.sleep(min(self.config.step_seconds, TICK_SECONDS))
            self.advance_due()

    # -- the API's helpers ------------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        """True when no key is configured or `header` is `Bearer <the key>`."""
        if self.config.api_key is None:
            return True
        expected = f"Bearer {self.config.api_key}".encode()
        return header is not None and hmac.compare_digest(header.encode(), expected)

    def take_failure(self) -> Failure | None:
        """The injected failure for this request, if any (counts `fail_times` down)."""
        failure, self.switches = take_failure(self.switches)
        return failure

    def record_request(
        self, method: str, path: str, headers: Mapping[str, str], body: Any
    ) -> dict[str, Any]:
        """Append one API request to `received`; the caller fills in `status` when answered."""
        record = {
            "method": method,
            "path": path,
            "headers": {name: headers[name] for name in RECORDED_HEADERS if name in headers},
            "authorization": "authorization" in headers,
            "body": body,
            "status": None,
            "at": iso_millis(self.clock.now()),
        }
        self.received.append(record)
        return record

    def remembered(self, path: str, key: str) -> Answer | None:
        """The first answer given to `Idempotency-Key: key` on `path`."""
        return self._answers.get((path, key))

    def remember(self, path: str, key: str, answer: Answer) -> None:
        """Keep `answer` for repeats of `key` on `path`."""
        self._answers.setdefault((path, key), answer)

    def submit(
        self,
        *,
        base_model: str,
        dataset: str,
        webhook_url: str | None,
        training_method: str,
        hyperparameters: dict[str, Any],
    ) -> Job:
        """Create a pending job; the ticker (or `/_fake/advance`) moves it on."""
        now = self.clock.now()
        job = Job(
            job_id=f"ft-{secrets.token_hex(8)}",
            base_model=base_model,
            dataset=dataset,
            created_at=now,
            webhook_url=webhook_url,
            training_method=training_method,
            hyperparameters=hyperparameters,
            next_at=next_due(now, self.config.step_seconds),
        )
        self.jobs[job.job_id] = job
        return job

    # -- the lifecycle ----------------------------------------------------------------------

    def advance_all(self, job_ids: list[str] | None = None) -> list[Job]:
        """Move every job (or those named) one step now; the jobs that moved."""
        chosen = list(self.jobs) if job_ids is None else [j for j in job_ids if j in self.jobs]
        return [job for job in map(self._advance, chosen) if job is not None]

    def advance_due(self) -> list[Job]:
        """Move every job whose step time has come; the jobs that moved."""
        now = self.clock.now()
        due = [job.job_id for job in self.jobs.values() if is_due(job, now)]
        return self.advance_all(due)

    def _advance(self, job_id: str) -> Job | None:
        step = advance(self.jobs[job_id], self.clock.now(), self.config.step_seconds)
        if step is None:
            return None
        self.jobs[job_id] = step.job
        self._announce(step)
        return step.job

    def _announce(self, step: Step) -> None:
        """Sign the step's webhook and hand what the switches let through to the sender."""
        body = orjson.dumps(w3_body(step.event, step.data, self.clock.now()))
        delivery = signed_delivery("w3", body, self.config.secret, step.event)
        headers = delivery.headers | {"User-Agent": "LLMTune-Webhooks (fake)"}
        webhook = Webhook(step.event, step.job.job_id, delivery.body, headers)
        job_id = step.job.job_id
        sends, self._held[job_id] = plan_sends([webhook], self._held.get(job_id, ()), self.switches)
        for url in self.destinations(step.job):
            for item in sends:
                self.sender.send(url, item)

    def destinations(self, job: Job) -> tuple[str, ...]:
        """The job's `webhookUrl` and the workspace URL, each once."""
        urls = (job.webhook_url, self.config.workspace_url)
        return tuple(dict.fromkeys(url for url in urls if url))
