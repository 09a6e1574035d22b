"""The whole path on a real server: `send-test-event --lifecycle` → stored → the in-process
worker → Slack (an HTTP sink), email (a real SMTP server) and an HTTP forward (Standard
Webhooks), each exactly once and in per-job order; a broken route's deliveries end dead."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks.webhooks import Webhook

from tests.e2e.server import receiver_env, run_cli, running_server, service_env
from tests.helpers import AUTH, SECRET
from tests.sinks import HttpSink, Received, Reply, http_sink
from tests.smtp_sink import SmtpSink, smtp_sink
from tests.waiting import until

pytestmark = pytest.mark.e2e

FORWARD_SECRET = "whsec_" + base64.b64encode(b"e2e-forward-secret-32-bytes-long").decode()
LIFECYCLE = ["training.started", "training.completed", "model.deployed"]
JOBS = ["job-e2e-fan-a", "job-e2e-fan-b"]


def routes_toml(http: HttpSink, smtp: SmtpSink) -> str:
    return f"""
[[routes]]
name = "slack-lifecycle"
events = ["training.*", "model.deployed"]
handler = "slack"
options = {{ webhook_url = "{http.url}/slack" }}

[[routes]]
name = "email-completed"
events = ["training.completed"]
handler = "email"
options = {{ host = "127.0.0.1", port = {smtp.port}, from = "receiver@example.test", \
to = ["ops@example.test"] }}

[[routes]]
name = "forward"
events = ["training.*", "model.deployed"]
handler = "http"
options = {{ url = "{http.url}/forward", secret = "{FORWARD_SECRET}", allow_private = true }}

[[routes]]
name = "broken"
events = ["model.deployed"]
handler = "http"
max_attempts = 2
options = {{ url = "{http.url}/broken", secret = "{FORWARD_SECRET}", allow_private = true }}
"""


def by_path(sink: HttpSink, path: str) -> list[Received]:
    return [r for r in sink.received if r.path == path]


async def test_lifecycle_reaches_every_sink_once_in_order(
    engine: AsyncEngine, db_url: str, tmp_path: Path
) -> None:
    """Two jobs' lifecycles: 6 Slack posts, 2 emails, 6 signed forwards, each exactly once and
    started → completed → deployed per job; the broken route's 2 deliveries are dead."""
    async with http_sink() as http, smtp_sink() as smtp:
        http.by_path["/broken"] = Reply(status=400, body="nope")
        (tmp_path / "routes.toml").write_text(routes_toml(http, smtp))
        env = receiver_env(db_url) | {"WORKER_POLL_SECONDS": "0.05"}

        with running_server(tmp_path, env, "--no-init-env") as server:
            for job in JOBS:
                result = await asyncio.to_thread(
                    run_cli,
                    [
                        "send-test-event",
                        "--url",
                        server.webhook_url,
                        "--secret",
                        SECRET,
                        "--lifecycle",
                        "--job-id",
                        job,
                    ],
                    cwd=tmp_path,
                    env=service_env(),
                )
                assert result.returncode == 0, result.stdout + result.stderr
            await until(lambda: len(by_path(http, "/slack")) >= 6)
            await until(lambda: len(by_path(http, "/forward")) >= 6)
            await until(lambda: len(smtp.received) >= 2)
            async with httpx.AsyncClient(
                base_url=server.base_url, headers=AUTH, trust_env=False
            ) as admin:
                async with asyncio.timeout(20):
                    while True:
                        listed = await admin.get("/admin/deliveries?status=dead")
                        dead = listed.json()["items"]
                        if len(dead) >= 2:
                            break
                        await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # anything extra (a duplicate) would arrive by now

    slack = by_path(http, "/slack")
    assert len(slack) == 6
    assert len({r.headers["x-idempotency-key"] for r in slack}) == 6
    for job in JOBS:
        texts = [json.loads(r.body)["text"] for r in slack if job in r.body.decode()]
        assert [next(t for t in LIFECYCLE if t in text) for text in texts] == LIFECYCLE

    forwards = by_path(http, "/forward")
    assert len({r.headers["webhook-id"] for r in forwards}) == len(forwards) == 6
    verifier = Webhook(FORWARD_SECRET)
    for job in JOBS:
        docs = [verifier.verify(r.body, r.headers) for r in forwards if job in r.body.decode()]
        assert [doc["type"] for doc in docs] == LIFECYCLE

    subjects = sorted(mail.parsed()["Subject"] for mail in smtp.received)
    assert len(subjects) == 2
    assert all(subject.startswith("training.completed") for subject in subjects)

    assert sorted((d["route"], d["jobId"]) for d in dead) == [("broken", job) for job in JOBS]
