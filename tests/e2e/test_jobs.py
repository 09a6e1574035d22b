"""Jobs end to end on real processes: the fake LLMTune (`fake-llmtune`) and `serve` with its
worker (on SQLite; the reordered-webhooks test, whose subject is the store's forward-only
rule, on PostgreSQL too). Submit → signed callbacks → deployed → smoke-test inference
stored → `inference.completed` delivered; a dropped `training.completed` found by the reconciler;
reordered and repeated webhooks ending where in-order ones do; idempotent resubmission; LLMTune's
errors passed on in its shape; `llmtune-receiver demo` itself."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.server import HOST, free_port, receiver_env, run_cli, running_server, service_env
from tests.helpers import ADMIN_TOKEN, AUTH, SECRET, SQLITE_ONLY
from tests.waiting import until_sync

pytestmark = pytest.mark.e2e

API_KEY = "sk_live_e2e"
WAIT = 20.0
ROUTES = """
[[routes]]
name = "log"
events = ["*"]
handler = "log"

[[routes]]
name = "smoke-test"
events = ["model.deployed"]
handler = "inference"
options = { prompts = ["Who are you?", "Say ok."] }
"""
REQUEST = {
    "baseModel": "meta-llama/Llama-3.3-70B-Instruct",
    "dataset": "s3://bucket/train.jsonl",
    "hyperparameters": {"learningRate": 0.0001, "epochs": 2, "batchSize": 8},
}


@dataclass
class Loop:
    """The running pair: the service's base URL and the fake's."""

    service: str
    fake: str

    def submit(self, **extra: Any) -> httpx.Response:
        return httpx.post(f"{self.service}/admin/jobs", json=REQUEST | extra, headers=AUTH)

    def job(self, key: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.service}/admin/jobs/{key}", headers=AUTH)
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job

    def advance(self, times: int) -> None:
        for _ in range(times):
            assert httpx.post(f"{self.fake}/_fake/advance").status_code == 200

    def switch(self, **switches: Any) -> None:
        answer = httpx.post(f"{self.fake}/_fake/switches", json=switches)
        assert answer.status_code == 200, answer.text

    def fake_requests(self, path: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = httpx.get(f"{self.fake}/_fake/received").json()["requests"]
        return [r for r in found if r["path"] == path]

    def webhooks_answered(self) -> int:
        attempts = httpx.get(f"{self.fake}/_fake/webhooks").json()["attempts"]
        return sum(1 for a in attempts if a["status"] is not None)


@contextlib.contextmanager
def fake_llmtune(tmp_path: Path) -> Iterator[str]:
    """`llmtune-receiver fake-llmtune` stepping only when told; its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "service", "fake-llmtune", "--port", str(port)]
    command += ["--secret", SECRET, "--api-key", API_KEY, "--step-seconds", "0"]
    command += ["--retry-base-seconds", "0.05"]
    with (tmp_path / "fake.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://{HOST}:{port}"
    try:
        until_sync(lambda: _answers(f"{base}/_fake/switches"))
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=1).status_code == 200
    return False


@pytest.fixture
def loop(engine: AsyncEngine, db_url: str, tmp_path: Path) -> Iterator[Loop]:
    (tmp_path / "routes.toml").write_text(ROUTES)
    port = free_port()
    with fake_llmtune(tmp_path) as fake:
        env = receiver_env(db_url) | {
            "ROUTES_FILE": str(tmp_path / "routes.toml"),
            "PUBLIC_URL": f"http://{HOST}:{port}",
            "LLMTUNE_API_URL": f"{fake}/v1",
            "LLMTUNE_API_KEY": API_KEY,
            "JOB_POLL_AFTER": "1",
            "WORKER_POLL_SECONDS": "0.05",
        }
        with running_server(tmp_path, env, port=port) as server:
            yield Loop(server.base_url, fake)


@SQLITE_ONLY
def test_submitted_job_reaches_deployed_with_its_smoke_test(loop: Loop) -> None:
    """Submit → the fake's signed callbacks → deployed; two prompts answered and stored; one
    `inference.completed` event, delivered to the log route."""
    answer = loop.submit()
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["status"] == "pending"
    assert job["webhookUrl"].startswith(loop.service + "/webhooks/llmtune/jobs/")
    [sent] = loop.fake_requests("/v1/fine-tune")
    assert sent["body"]["webhookUrl"] == job["webhookUrl"]
    assert sent["headers"]["idempotency-key"] == job["idempotencyKey"] == job["id"]
    loop.advance(3)
    until_sync(lambda: len(loop.job(job["id"])["inferenceRuns"]) == 2)
    done = loop.job(job["llmtuneJobId"])  # found by LLMTune's id too
    assert done["status"] == "deployed"
    assert done["artifact"] == f"ft:{REQUEST['baseModel']}:{job['llmtuneJobId']}"
    assert [r["output"] for r in done["inferenceRuns"]] == ["echo: Who are you?", "echo: Say ok."]
    until_sync(lambda: "inference.completed" in [e["type"] for e in loop.job(job["id"])["events"]])
    final = loop.job(job["id"])
    kinds = [entry["kind"] for entry in final["timeline"]]
    assert kinds[0] == "submitted"
    assert kinds.count("event") == 4
    assert kinds.count("inference") == 2
    times = [entry["at"] for entry in final["timeline"]]
    assert times == sorted(times)
    types = [(e["type"], e["source"]) for e in final["events"]]
    assert types == [
        ("training.started", "job-callback"),
        ("training.completed", "job-callback"),
        ("model.deployed", "job-callback"),
        ("inference.completed", "internal"),
    ]
    until_sync(
        lambda: (
            all(d["status"] == "succeeded" for d in loop.job(job["id"])["deliveries"])
            and len(loop.job(job["id"])["deliveries"]) == 5
        )
    )


@SQLITE_ONLY
def test_unsigned_callbacks_cannot_forge_a_job(loop: Loop) -> None:
    """The forgery of a leaked callback URL: unsigned `training.completed` and `model.deployed`
    naming an attacker's model only ring the doorbell (202, nothing stored, the job polled
    through LLMTune's API); LLMTune's signed events are then stored as new and the smoke test
    goes to LLMTune's artifact, never the attacker's."""
    job = loop.submit().json()
    llmtune_id = job["llmtuneJobId"]
    forged = [
        {
            "type": "training.completed",
            "data": {"jobId": llmtune_id, "artifact": "attacker/model", "metrics": {"loss": 0}},
        },
        {"type": "model.deployed", "data": {"jobId": llmtune_id, "modelId": "attacker/model"}},
    ]
    for body in forged:
        answer = httpx.post(job["webhookUrl"], json=body)
        assert answer.status_code == 202, answer.text
        assert answer.json()["stored"] is False
    until_sync(lambda: len(loop.fake_requests(f"/v1/fine-tune/{llmtune_id}")) >= 1)
    held = loop.job(job["id"])
    assert (held["status"], held["artifact"], held["events"]) == ("pending", None, [])

    loop.advance(3)
    until_sync(lambda: len(loop.job(job["id"])["inferenceRuns"]) == 2)
    done = loop.job(job["id"])
    assert done["status"] == "deployed"
    assert done["artifact"] == f"ft:{REQUEST['baseModel']}:{llmtune_id}"
    completed = [e for e in done["events"] if e["type"] == "training.completed"]
    assert [(e["source"], e["verified"], e["duplicateCount"]) for e in completed] == [
        ("job-callback", True, 0)
    ]
    received = httpx.get(f"{loop.fake}/_fake/received").json()["requests"]
    assert "attacker" not in json.dumps(received)


@SQLITE_ONLY
def test_reconciler_finds_a_dropped_completion(loop: Loop) -> None:
    """The fake never sends `training.completed`; the reconciler's poll stores it anyway."""
    loop.switch(drop=["training.completed"])
    job = loop.submit().json()
    loop.advance(2)
    until_sync(lambda: loop.job(job["id"])["status"] == "completed")
    sources = {e["type"]: e["source"] for e in loop.job(job["id"])["events"]}
    assert sources == {"training.started": "job-callback", "training.completed": "poll"}
    assert loop.job(job["id"])["lastPolledAt"] is not None


def test_reordered_and_repeated_webhooks_end_where_in_order_ones_do(loop: Loop) -> None:
    """Duplicates and a late `training.started`: same final state and the same number of
    events and deliveries as the in-order job."""
    plain = loop.submit(idempotencyKey="plain").json()
    loop.advance(3)
    until_sync(lambda: len(loop.job(plain["id"])["deliveries"]) == 5)
    sent_before = loop.webhooks_answered()
    loop.switch(duplicates=True, reorder=True)
    odd = loop.submit(idempotencyKey="odd").json()
    loop.advance(3)
    until_sync(lambda: loop.webhooks_answered() >= sent_before + 6)
    until_sync(lambda: len(loop.job(odd["id"])["deliveries"]) == 5)
    a, b = loop.job(plain["id"]), loop.job(odd["id"])
    assert (b["status"], b["startedAt"] is not None) == (a["status"], True)
    assert len(b["events"]) == len(a["events"])
    assert sum(e["duplicateCount"] for e in b["events"]) == 3


@SQLITE_ONLY
def test_resubmission_and_llmtune_errors(loop: Loop) -> None:
    """LLMTune's 402 stays 402 and a 500 becomes 502, in LLMTune's error shape, the row kept
    with its error; the same idempotency key later submits it exactly once."""
    loop.switch(fail_status=402, fail_times=1)
    refused = loop.submit(idempotencyKey="k-402")
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert set(error) == {"message", "code", "details"}
    assert error["details"]["llmtuneStatus"] == 402
    loop.switch(fail_status=500, fail_times=3)
    failed = loop.submit(idempotencyKey="k-500")
    assert failed.status_code == 502
    kept = loop.job(failed.json()["error"]["details"]["jobId"])
    assert (kept["status"], kept["llmtuneJobId"]) == ("submitted", None)
    assert "500" in kept["submitError"]
    again = loop.submit(idempotencyKey="k-500")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == kept["id"]
    assert again.json()["status"] == "pending"
    repeat = loop.submit(idempotencyKey="k-500")
    assert (repeat.status_code, repeat.json()["llmtuneJobId"]) == (
        200,
        again.json()["llmtuneJobId"],
    )
    accepted = [r for r in loop.fake_requests("/v1/fine-tune") if r["status"] == 200]
    assert [r["headers"]["idempotency-key"] for r in accepted] == ["k-500"]


@SQLITE_ONLY
def test_bad_job_request_is_400(loop: Loop) -> None:
    """A body that is not a job request is refused before anything is stored or sent."""
    answer = httpx.post(
        f"{loop.service}/admin/jobs",
        json={"baseModel": "", "dataset": "s3://d", "hyperparameters": {"epochs": 0}},
        headers=AUTH,
    )
    assert answer.status_code == 400
    fields = {p["field"] for p in answer.json()["error"]["details"]["problems"]}
    assert fields == {"baseModel", "hyperparameters.epochs"}
    assert loop.fake_requests("/v1/fine-tune") == []


def test_demo_command(tmp_path: Path) -> None:
    """`llmtune-receiver demo` shows a job going from submission to deployed and its answer."""
    done = subprocess.run(
        [sys.executable, "-m", "service", "demo", "--step", "0.3", "--timeout", "40"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "status     deployed" in done.stdout
    assert "smoke test" in done.stdout


@SQLITE_ONLY
def test_refresh_polls_now_and_submit_command(loop: Loop, tmp_path: Path) -> None:
    """`llmtune-receiver submit` creates a job (text, or the API's JSON with `--json`); `jobs
    refresh ID` asks LLMTune at once and prints the job as it then stands; the same idempotency
    key submits nothing new and says so."""
    env = service_env(ADMIN_TOKENS=ADMIN_TOKEN)
    args = ["submit", "--url", loop.service, "--base-model", "base-m", "--dataset", "s3://d"]
    done = run_cli(
        [*args, "--epochs", "2", "--idempotency-key", "cli-1", "--json"], cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert (job["baseModel"], job["hyperparameters"], job["status"]) == (
        "base-m",
        {"epochs": 2},
        "pending",
    )
    loop.switch(drop=["training.started"])
    loop.advance(1)
    polls_before = len(loop.fake_requests(f"/v1/fine-tune/{job['llmtuneJobId']}"))
    refresh = ["jobs", "refresh", job["llmtuneJobId"], "--url", loop.service]
    refreshed = run_cli(refresh, cwd=tmp_path, env=env)
    assert refreshed.returncode == 0, refreshed.stderr
    lines = refreshed.stdout.splitlines()
    assert lines[0] == f"asked LLMTune about job {job['id']}; it is running"
    assert ["status:", "running"] in [line.split() for line in lines]
    assert len(loop.fake_requests(f"/v1/fine-tune/{job['llmtuneJobId']}")) > polls_before
    as_json = run_cli([*refresh, "--json"], cwd=tmp_path, env=env)
    assert json.loads(as_json.stdout)["status"] == "running"

    again = run_cli([*args, "--idempotency-key", "cli-1"], cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    text = again.stdout.splitlines()
    assert text[0] == (
        f"job {job['id']} was already submitted with this idempotency key (nothing new)"
    )
    assert ["idempotencyKey:", "cli-1"] in [line.split() for line in text]
    assert text[-1] == f"follow it: llmtune-receiver jobs show {job['id']}"
    unknown = run_cli(
        ["jobs", "refresh", "no-such-job", "--url", loop.service], cwd=tmp_path, env=env
    )
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "llmtune-receiver: no job 'no-such-job' (404 NOT_FOUND)\n",
    )
