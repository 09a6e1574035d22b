"""The fake LLMTune over real HTTP: its API, its signed webhooks to a recording sink, and every
switch. Each fake runs under uvicorn in the test's event loop on a free port of 127.0.0.1 and
steps only when told (`/_fake/advance`) unless a test gives it a clock; the CLI test starts the
real `fake-llmtune` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from service.clock import Clock, FakeClock
from service.fake_llmtune import FakeConfig, FakeLLMTune, Switches, create_fake_app, fake_state
from service.fake_llmtune.sender import Sleep
from service.fake_llmtune.state import INBOX_LIMIT
from tests.e2e.server import free_port, service_env
from tests.sinks import HttpSink, Received, Reply, http_sink

SECRET = "whsec_fake-llmtune-test-secret"
API_KEY = "sk_live_fake"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MODEL = "meta-llama/Llama-3.3-70B-Instruct"
LIFECYCLE = ["training.started", "training.completed", "model.deployed"]
WAIT = 3.0


def config(**values: Any) -> FakeConfig:
    """A fake that steps only on /_fake/advance, needs API_KEY, retries after 10 ms."""
    base: dict[str, Any] = {
        "secret": SECRET,
        "step_seconds": 0,
        "api_key": API_KEY,
        "retry_base_seconds": 0.01,
    }
    return FakeConfig(**(base | values))


@dataclass
class Fake:
    """A running fake: a client on its base URL and its state object."""

    client: httpx.AsyncClient
    state: FakeLLMTune
    sinks: list[HttpSink] = field(default_factory=list)

    async def submit(self, sink: HttpSink | None = None, **body: Any) -> str:
        """Submit a fine-tune (webhooks to `sink`/hook); its job id."""
        payload: dict[str, Any] = {"baseModel": MODEL, "dataset": "s3://bucket/data.jsonl"}
        if sink is not None:
            payload["webhookUrl"] = f"{sink.url}/hook"
        response = await self.client.post("/v1/fine-tune", json=payload | body, headers=AUTH)
        assert response.status_code == 200, response.text
        job_id: str = response.json()["jobId"]
        return job_id

    async def advance(self, times: int = 1) -> list[dict[str, Any]]:
        """POST /_fake/advance `times` times; the jobs moved by the last one."""
        moved: list[dict[str, Any]] = []
        for _ in range(times):
            response = await self.client.post("/_fake/advance")
            assert response.status_code == 200
            moved = response.json()["advanced"]
        return moved

    async def switch(self, **switches: Any) -> dict[str, Any]:
        """POST /_fake/switches."""
        response = await self.client.post("/_fake/switches", json=switches)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def job(self, job_id: str) -> dict[str, Any]:
        """GET /v1/fine-tune/{job_id}."""
        response = await self.client.get(f"/v1/fine-tune/{job_id}", headers=AUTH)
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    async def settled(self) -> list[dict[str, Any]]:
        """Wait until no webhook is in flight; every attempt so far."""
        async with asyncio.timeout(WAIT):
            await self.state.sender.idle()
        attempts: list[dict[str, Any]] = (await self.client.get("/_fake/webhooks")).json()[
            "attempts"
        ]
        return attempts


@contextlib.asynccontextmanager
async def running_fake(
    cfg: FakeConfig, *, clock: Clock | None = None, sleep: Sleep | None = None
) -> AsyncIterator[Fake]:
    """`create_fake_app(cfg)` under uvicorn on a free port, lifespan on; stopped on exit."""
    app = create_fake_app(cfg, clock=clock, sleep=sleep)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(WAIT):
            # uvicorn.Server offers only a flag for "listening"; poll it.
            while not server.started:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=WAIT
        ) as client:
            yield Fake(client, fake_state(app))
    finally:
        server.should_exit = True
        await task
        sock.close()


def body_of(request: Received) -> dict[str, Any]:
    """A webhook's JSON body."""
    body: dict[str, Any] = orjson.loads(request.body)
    return body


def events_of(requests: list[Received]) -> list[str]:
    """The event names of the webhooks, in arrival order."""
    return [body_of(request)["event"] for request in requests]


def assert_signed(request: Received) -> None:
    """The delivery carries W3 headers and a hex HMAC-SHA256 of its raw body under SECRET."""
    expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-webhook-signature"], expected)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-webhook-event"] == body_of(request)["event"]


class TestLifecycle:
    async def test_signed_webhooks_in_lifecycle_order(self) -> None:
        """A job sends training.started, training.completed, model.deployed, each signed."""
        async with http_sink() as sink, running_fake(config()) as fake:
            job_id = await fake.submit(sink)
            assert (await fake.job(job_id))["status"] == "pending"
            await fake.advance(3)
            got = await sink.wait_for(3, within=WAIT)
        assert events_of(got) == LIFECYCLE
        for request in got:
            assert_signed(request)
            assert request.path == "/hook"
            assert body_of(request)["data"]["jobId"] == job_id
            assert body_of(request)["timestamp"].endswith("Z")
        artifact = f"ft:{MODEL}:{job_id}"
        completed = body_of(got[1])["data"]
        assert completed["artifact"] == artifact
        assert set(completed["metrics"]) == {"loss", "tokens"}
        deployed = body_of(got[2])["data"]
        assert (deployed["modelId"], deployed["deploymentId"]) == (artifact, f"deploy-{job_id}")

    async def test_get_follows_the_steps(self) -> None:
        """GET shows pending, training, completed with artifact and metrics."""
        async with running_fake(config()) as fake:
            job_id = await fake.submit()
            seen = []
            for _ in range(3):
                await fake.advance()
                view = await fake.job(job_id)
                seen.append((view["status"], view["progress"]))
        assert seen == [("training", 50), ("completed", 100), ("completed", 100)]
        assert view["artifact"] == f"ft:{MODEL}:{job_id}"
        assert view["metrics"] == {"loss": 1.12, "tokens": 3250000}
        assert view["error"] is None

    async def test_failing_dataset(self) -> None:
        """A dataset naming "fail" ends in training.failed with an error, and no deployment."""
        async with http_sink() as sink, running_fake(config()) as fake:
            job_id = await fake.submit(sink, dataset="s3://bucket/will-fail.jsonl")
            await fake.advance(3)
            got = await sink.wait_for(2, within=WAIT)
            view = await fake.job(job_id)
            await fake.settled()
        assert events_of(sink.received) == ["training.started", "training.failed"]
        assert isinstance(body_of(got[1])["data"]["error"], str)
        assert (view["status"], view["artifact"]) == ("failed", None)
        assert view["error"] == body_of(got[1])["data"]["error"]

    async def test_clock_moves_jobs(self) -> None:
        """With a step, the injected clock moving on is enough: no /_fake/advance needed."""
        clock = FakeClock(datetime(2025, 11, 8, tzinfo=UTC))
        async with http_sink() as sink, running_fake(config(step_seconds=60), clock=clock) as fake:
            await fake.submit(sink)
            await asyncio.sleep(0.1)
            assert sink.received == []
            for count in (1, 2, 3):
                clock.advance(timedelta(seconds=60))
                await sink.wait_for(count, within=WAIT)
        assert events_of(sink.received) == LIFECYCLE

    async def test_workspace_url_also_receives(self) -> None:
        """Every webhook goes to the job's webhookUrl and to the workspace URL."""
        async with http_sink() as job_sink, http_sink() as workspace:
            cfg = config(workspace_url=f"{workspace.url}/ws")
            async with running_fake(cfg) as fake:
                await fake.submit(job_sink)
                await fake.advance()
                await job_sink.wait_for(1, within=WAIT)
                await workspace.wait_for(1, within=WAIT)
        assert job_sink.received[0].body == workspace.received[0].body
        assert workspace.received[0].path == "/ws"

    async def test_advance_answers_what_moved(self) -> None:
        """/_fake/advance lists the jobs it moved; finished jobs and other ids do not move."""
        async with running_fake(config()) as fake:
            first = await fake.submit()
            second = await fake.submit()
            moved = await fake.advance()
            assert {job["jobId"] for job in moved} == {first, second}
            only = await fake.client.post("/_fake/advance", json={"jobId": first})
            assert [job["jobId"] for job in only.json()["advanced"]] == [first]
            assert await fake.advance(5) == []
            bad = await fake.client.post("/_fake/advance", json=["x"])
        assert bad.status_code == 400


class TestApi:
    async def test_idempotency_key_repeat_creates_nothing(self) -> None:
        """A repeat with the same Idempotency-Key gets the first answer; a new key, a new job."""
        body = {"baseModel": MODEL, "dataset": "s3://d"}
        async with running_fake(config()) as fake:
            answers = [
                await fake.client.post(
                    "/v1/fine-tune", json=body, headers=AUTH | {"Idempotency-Key": key}
                )
                for key in ("k-1", "k-1", "k-2")
            ]
            jobs = len(fake.state.jobs)
            received = (await fake.client.get("/_fake/received")).json()["requests"]
        first, repeat, other = (answer.json() for answer in answers)
        assert repeat == first == {"jobId": first["jobId"], "status": "pending"}
        assert answers[1].headers["idempotent-replayed"] == "true"
        assert other["jobId"] != first["jobId"]
        assert jobs == 2
        assert [r["headers"]["idempotency-key"] for r in received] == ["k-1", "k-1", "k-2"]
        assert received[0]["body"] == body
        assert received[0]["authorization"] is True

    @pytest.mark.parametrize("missing", ["baseModel", "dataset"])
    async def test_missing_field_is_400(self, missing: str) -> None:
        """A submission without baseModel or dataset is refused in the nested error shape."""
        body = {"baseModel": MODEL, "dataset": "s3://d"}
        del body[missing]
        async with running_fake(config()) as fake:
            response = await fake.client.post("/v1/fine-tune", json=body, headers=AUTH)
            jobs = len(fake.state.jobs)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "INVALID_REQUEST"
        assert missing in response.json()["error"]["message"]
        assert jobs == 0

    async def test_unknown_job_is_404(self) -> None:
        """GET of an unknown job id is 404."""
        async with running_fake(config()) as fake:
            response = await fake.client.get("/v1/fine-tune/ft-nope", headers=AUTH)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"

    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({}, id="missing"),
            pytest.param({"Authorization": "Bearer wrong"}, id="wrong"),
            pytest.param({"Authorization": API_KEY}, id="no-bearer"),
        ],
    )
    async def test_401_without_the_key(self, headers: dict[str, str]) -> None:
        """A missing or wrong key is 401 UNAUTHORIZED, and nothing is created."""
        async with running_fake(config()) as fake:
            response = await fake.client.post(
                "/v1/fine-tune", json={"baseModel": MODEL, "dataset": "d"}, headers=headers
            )
            jobs = len(fake.state.jobs)
        assert response.status_code == 401
        assert response.json() == {"error": {"message": "Invalid API key", "code": "UNAUTHORIZED"}}
        assert jobs == 0

    async def test_no_key_configured_needs_none(self) -> None:
        """Without --api-key any caller is served."""
        async with running_fake(config(api_key=None)) as fake:
            await fake.submit()

    async def test_inference(self) -> None:
        """Model inference (a model id with a slash), playground and batch answer as documented."""
        async with running_fake(config()) as fake:
            post = fake.client.post
            model = await post(
                f"/v1/models/{MODEL}/inference", json={"prompt": "hi", "maxTokens": 8}, headers=AUTH
            )
            playground = await post(
                "/v1/playground/inference", json={"modelId": MODEL, "prompt": "hi"}, headers=AUTH
            )
            requests = [{"id": f"r{n}", "prompt": "p"} for n in range(100)]
            batch = await post(
                "/v1/batch/inference", json={"modelId": MODEL, "requests": requests}, headers=AUTH
            )
            too_many = await post(
                "/v1/batch/inference",
                json={"modelId": MODEL, "requests": [*requests, {"id": "x", "prompt": "p"}]},
                headers=AUTH,
            )
            no_prompt = await post(f"/v1/models/{MODEL}/inference", json={}, headers=AUTH)
        expected = {"text": "echo: hi", "tokens": 2, "model": MODEL, "latency": 1}
        assert model.json() == playground.json() == expected
        assert batch.json()["status"] == "queued"
        assert batch.json()["summary"] == {"total": 100, "accepted": 100}
        assert batch.json()["batchId"].startswith("batch-")
        assert (too_many.status_code, no_prompt.status_code) == (400, 400)

    async def test_unknown_path_and_bad_json(self) -> None:
        """Unknown /v1 paths are JSON 404s; a body that is not JSON is a 400."""
        async with running_fake(config()) as fake:
            unknown = await fake.client.get("/v1/nothing", headers=AUTH)
            bad = await fake.client.post("/v1/fine-tune", content=b"{", headers=AUTH)
            received = (await fake.client.get("/_fake/received")).json()["requests"]
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "NOT_FOUND"
        assert bad.status_code == 400
        assert received[1]["body"] == "{"
        assert [r["status"] for r in received] == [404, 400]


class TestSwitches:
    async def test_drop_leaves_get_completed(self) -> None:
        """A dropped training.completed is never sent, yet GET shows the job completed."""
        async with http_sink() as sink, running_fake(config()) as fake:
            await fake.switch(drop=["training.completed"])
            job_id = await fake.submit(sink)
            await fake.advance(3)
            await sink.wait_for(2, within=WAIT)
            attempts = await fake.settled()
            view = await fake.job(job_id)
        assert events_of(sink.received) == ["training.started", "model.deployed"]
        assert "training.completed" not in [a["event"] for a in attempts]
        assert view["status"] == "completed"
        assert view["artifact"] == f"ft:{MODEL}:{job_id}"

    async def test_duplicates_send_twice(self) -> None:
        """With duplicates every webhook arrives twice, byte for byte."""
        async with http_sink() as sink, running_fake(config()) as fake:
            await fake.switch(duplicates=True)
            await fake.submit(sink)
            await fake.advance()
            got = await sink.wait_for(2, within=WAIT)
            await fake.settled()
        assert len(sink.received) == 2
        assert got[0].body == got[1].body
        assert events_of(got) == ["training.started"] * 2

    async def test_reorder(self) -> None:
        """With reorder training.completed arrives before training.started."""
        async with (
            http_sink() as sink,
            running_fake(config(switches=Switches(reorder=True))) as fake,
        ):
            await fake.submit(sink)
            await fake.advance()
            view = (await fake.client.get("/_fake/switches")).json()
            await fake.advance()
            got = await sink.wait_for(2, within=WAIT)
        assert view["reorder"] is True
        assert events_of(got) == ["training.completed", "training.started"]
        for request in got:
            assert_signed(request)

    async def test_429_has_retry_after_then_normal(self) -> None:
        """fail_status 429 with fail_times 1: one 429 with Retry-After: 1, then normal again."""
        async with running_fake(config()) as fake:
            await fake.switch(fail_status=429, fail_times=1)
            failed = await fake.client.get("/v1/fine-tune/ft-x", headers=AUTH)
            after = await fake.client.get("/v1/fine-tune/ft-x", headers=AUTH)
            switches = (await fake.client.get("/_fake/switches")).json()
        assert failed.status_code == 429
        assert failed.headers["retry-after"] == "1"
        assert failed.json()["error"]["code"] == "RATE_LIMITED"
        assert after.status_code == 404
        assert (switches["fail_status"], switches["fail_times"]) == (None, None)

    @pytest.mark.parametrize(
        ("status", "code"),
        [(500, "INTERNAL_ERROR"), (402, "INSUFFICIENT_CREDITS"), (400, "INVALID_REQUEST")],
    )
    async def test_fail_status(self, status: int, code: str) -> None:
        """An injected status answers every API call, and the submission creates nothing."""
        async with running_fake(config(switches=Switches(fail_status=status))) as fake:
            answers = [
                await fake.client.post(
                    "/v1/fine-tune", json={"baseModel": MODEL, "dataset": "d"}, headers=AUTH
                )
                for _ in range(2)
            ]
            jobs = len(fake.state.jobs)
        assert [a.status_code for a in answers] == [status, status]
        assert answers[0].json()["error"]["code"] == code
        assert "retry-after" not in answers[0].headers
        assert jobs == 0

    async def test_injected_failure_then_same_idempotency_key_is_processed(self) -> None:
        """A request refused by an injected 500 is not remembered under its key."""
        body = {"baseModel": MODEL, "dataset": "d"}
        headers = AUTH | {"Idempotency-Key": "k"}
        async with running_fake(config(switches=Switches(fail_status=500, fail_times=1))) as fake:
            first = await fake.client.post("/v1/fine-tune", json=body, headers=headers)
            second = await fake.client.post("/v1/fine-tune", json=body, headers=headers)
        assert (first.status_code, second.status_code) == (500, 200)
        assert "idempotent-replayed" not in second.headers

    async def test_flat_errors(self) -> None:
        """flat_errors gives {"error": "msg", "message": "msg"}."""
        async with running_fake(config()) as fake:
            await fake.switch(flat_errors=True)
            response = await fake.client.get("/v1/fine-tune/ft-x")
        assert response.status_code == 401
        assert response.json() == {"error": "Invalid API key", "message": "Invalid API key"}

    async def test_slow_seconds_delays_answers(self) -> None:
        """slow_seconds waits (through the injected sleep) before every API answer."""
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            await asyncio.sleep(0)

        async with running_fake(config(), sleep=sleep) as fake:
            await fake.switch(slow_seconds=2.5)
            response = await fake.client.get("/v1/fine-tune/ft-x", headers=AUTH)
        assert response.status_code == 404
        assert waits == [2.5]

    async def test_real_slowness(self) -> None:
        """Without an injected sleep the answer really is late."""
        async with running_fake(config(switches=Switches(slow_seconds=0.2))) as fake:
            started = time.monotonic()
            await fake.client.get("/v1/fine-tune/ft-x", headers=AUTH)
            elapsed = time.monotonic() - started
        assert 0.2 <= elapsed < WAIT

    @pytest.mark.parametrize(
        "patch",
        [{"nope": 1}, {"fail_status": "429"}, {"drop": "training.completed"}, []],
    )
    async def test_bad_switches_are_refused(self, patch: Any) -> None:
        """POST /_fake/switches refuses unknown names and senseless values; nothing changes."""
        async with running_fake(config()) as fake:
            response = await fake.client.post("/_fake/switches", json=patch)
            after = (await fake.client.get("/_fake/switches")).json()
        assert response.status_code == 400
        assert isinstance(response.json()["error"], str)
        assert after == {
            "duplicates": False,
            "reorder": False,
            "drop": [],
            "fail_status": None,
            "fail_times": None,
            "flat_errors": False,
            "slow_seconds": 0.0,
        }


class TestRetries:
    async def test_500_then_200_is_retried(self) -> None:
        """A webhook answered 500 is sent again, the same bytes, and recorded per attempt."""
        async with http_sink() as sink, running_fake(config()) as fake:
            sink.script = [Reply(status=500), Reply(status=200)]
            job_id = await fake.submit(sink)
            await fake.advance()
            got = await sink.wait_for(2, within=WAIT)
            attempts = await fake.settled()
        assert got[0].body == got[1].body
        assert_signed(got[1])
        assert [(a["attempt"], a["status"], a["error"]) for a in attempts] == [
            (1, 500, None),
            (2, 200, None),
        ]
        assert attempts[0]["event"] == "training.started"
        assert attempts[0]["jobId"] == job_id
        assert attempts[0]["url"] == f"{sink.url}/hook"

    async def test_gives_up_after_the_last_attempt(self) -> None:
        """A receiver that keeps failing gets exactly `webhook_attempts` tries."""
        async with http_sink() as sink, running_fake(config(webhook_attempts=3)) as fake:
            sink.default = Reply(status=503)
            await fake.submit(sink)
            await fake.advance()
            attempts = await fake.settled()
        assert [a["attempt"] for a in attempts] == [1, 2, 3]
        assert len(sink.received) == 3

    async def test_connection_error_is_recorded_and_retried(self) -> None:
        """Nobody listening: each attempt records the error and no status."""
        closed = f"http://127.0.0.1:{free_port()}/hook"
        async with running_fake(config(webhook_attempts=2)) as fake:
            await fake.submit(webhookUrl=closed)
            await fake.advance()
            attempts = await fake.settled()
        assert [(a["attempt"], a["status"]) for a in attempts] == [(1, None), (2, None)]
        assert all(a["error"] for a in attempts)

    async def test_retries_keep_a_jobs_order(self) -> None:
        """A job's next webhook waits until the one being retried got through."""
        async with http_sink() as sink, running_fake(config()) as fake:
            sink.script = [Reply(status=500), Reply(status=500)]
            await fake.submit(sink)
            await fake.advance(2)
            got = await sink.wait_for(4, within=WAIT)
        assert events_of(got) == ["training.started"] * 3 + ["training.completed"]

    async def test_api_does_not_wait_for_webhooks(self) -> None:
        """A slow receiver does not slow the API down."""
        async with http_sink() as sink, running_fake(config()) as fake:
            sink.default = Reply(delay=1.0)
            job_id = await fake.submit(sink)
            started = time.monotonic()
            await fake.advance()
            await sink.wait_for(1, within=WAIT)
            view = await fake.job(job_id)
            elapsed = time.monotonic() - started
        assert view["status"] == "training"
        assert elapsed < 0.5


@pytest.mark.e2e
async def test_cli_runs_the_fake() -> None:
    """`fake-llmtune` serves the API with its options, posts signed webhooks, stops on SIGTERM."""
    port = free_port()
    async with http_sink() as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service",
            "fake-llmtune",
            f"--port={port}",
            f"--secret={SECRET}",
            f"--api-key={API_KEY}",
            "--step-seconds=0.05",
            f"--workspace-url={sink.url}/ws",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=service_env(),
        )
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=WAIT
            ) as client:
                await _until_listening(client)
                submitted = await client.post(
                    "/v1/fine-tune", json={"baseModel": MODEL, "dataset": "d"}, headers=AUTH
                )
                assert submitted.status_code == 200
                got = await sink.wait_for(3, within=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            async with asyncio.timeout(10):
                _, stderr = await process.communicate()
    assert events_of(got) == LIFECYCLE
    for request in got:
        assert_signed(request)
    assert process.returncode == 0, stderr.decode()


async def _until_listening(client: httpx.AsyncClient) -> None:
    """Poll the fake until it answers (at most 20 s: a cold interpreter start)."""
    async with asyncio.timeout(20):
        while True:
            try:
                await client.get("/_fake/switches")
            except httpx.TransportError:
                await asyncio.sleep(0.05)
            else:
                return


async def test_inbox_keeps_what_was_posted_and_needs_no_key() -> None:
    async with running_fake(config()) as fake:
        assert (await fake.client.get("/_fake/inbox")).json() == {"requests": []}
        for n in range(2):
            answer = await fake.client.post(
                "/_fake/inbox", content=f'{{"n": {n}}}', headers={"webhook-id": f"msg_{n}"}
            )
            assert answer.status_code == 204
        kept = (await fake.client.get("/_fake/inbox")).json()["requests"]
    assert [entry["body"] for entry in kept] == ['{"n": 0}', '{"n": 1}']
    assert [entry["headers"]["webhook-id"] for entry in kept] == ["msg_0", "msg_1"]


async def test_inbox_keeps_only_the_latest() -> None:
    async with running_fake(config()) as fake:
        fake.state.inbox.extend({"body": str(n)} for n in range(INBOX_LIMIT))
        await fake.client.post("/_fake/inbox", content="last")
        kept = (await fake.client.get("/_fake/inbox")).json()["requests"]
    assert len(kept) == INBOX_LIMIT
    assert kept[0]["body"] == "1"
    assert kept[-1]["body"] == "last"
