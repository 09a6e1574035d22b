"""`demo`: the whole loop in a minute, on this machine only.

Starts a fake LLMTune and the service (SQLite in a temporary folder, a `log` route and an
`inference` route), submits a fine-tune through the admin API, and prints the job's timeline as
the fake's signed webhooks move it from `submitted` to `deployed` and the smoke test runs against
the new model. Both processes are stopped (by pid) and the folder removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from service.whsec import WHSEC_PREFIX

ROUTES = """\
[[routes]]
name = "log"
events = ["*"]
handler = "log"

[[routes]]
name = "smoke-test"
events = ["model.deployed"]
handler = "inference"
options = { prompts = ["In one sentence: what are you?"], max_tokens = 64 }
"""
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _process(argv: list[str], env: dict[str, str], log_path: Path) -> Iterator[int]:
    """A child process with its output in `log_path`, stopped by pid on the way out."""
    with log_path.open("wb") as log:
        child = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            yield child.pid
        finally:
            child.terminate()
            try:
                child.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _wait_ready(url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in time; its log:\n{log_path.read_text()[-2000:]}")


def _lines_for(job: dict[str, Any], seen: set[str]) -> list[str]:
    """Timeline lines not printed yet: status changes, events, inference runs."""
    lines = []
    status_key = f"status:{job['status']}"
    if status_key not in seen:
        seen.add(status_key)
        lines.append(f"  status     {job['status']}")
    for event in job.get("events", []):
        if event["id"] not in seen:
            seen.add(event["id"])
            lines.append(f"  event      {event['type']:<22} via {event['source']}")
    for run in job.get("inferenceRuns", []):
        if run["id"] not in seen and run["status"] in ("succeeded", "failed"):
            seen.add(run["id"])
            answer = run["output"] if run["status"] == "succeeded" else run["error"]
            lines.append(f"  smoke test {run['model']}: {answer!r}")
    return lines


def _finished(job: dict[str, Any]) -> bool:
    runs = job.get("inferenceRuns", [])
    return job["status"] == "deployed" and any(r["status"] == "succeeded" for r in runs)


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 once the job is deployed and its smoke test answered."""
    secret = WHSEC_PREFIX + secrets.token_urlsafe(24)
    token = secrets.token_urlsafe(16)
    port = args.port if args.port is not None else _free_port()
    fake_port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="llmtune-demo-") as folder:
        work = Path(folder)
        (work / "routes.toml").write_text(ROUTES)
        env = os.environ | {
            "DATABASE_URL": f"sqlite+aiosqlite:///{work / 'demo.db'}",
            "WEBHOOK_SECRETS": secret,
            "ADMIN_TOKENS": token,
            "PUBLIC_URL": base,
            "ROUTES_FILE": str(work / "routes.toml"),
            "LLMTUNE_API_URL": f"http://127.0.0.1:{fake_port}/v1",
            "LLMTUNE_API_KEY": "demo-key",
            "JOB_POLL_AFTER": "5",
            "LOG_LEVEL": "warning",
        }
        fake = [sys.executable, "-m", "service", "fake-llmtune", "--port", str(fake_port)]
        fake += ["--secret", secret, "--api-key", "demo-key", "--step-seconds", str(args.step)]
        serve = [sys.executable, "-m", "service", "serve", "--port", str(port), "--no-init-env"]
        _say(f"demo: starting a fake LLMTune on 127.0.0.1:{fake_port}")
        with _process(fake, env, work / "fake.log"):
            _wait_ready(f"http://127.0.0.1:{fake_port}/_fake/switches", work / "fake.log")
            _say(f"demo: starting the receiver on {base} (SQLite in {work})")
            with _process(serve, env, work / "serve.log"):
                _wait_ready(f"{base}/readyz", work / "serve.log")
                _say("demo: both ready; submitting a fine-tune through the admin API")
                code = _run(base, token, args.timeout)
                _say("demo: stopping the receiver and the fake LLMTune")
    if code == 0:
        _say("demo: done: the job reached deployed and its smoke test answered (both stopped)")
    return code


def _run(base: str, token: str, timeout: float) -> int:
    auth = {"Authorization": f"Bearer {token}"}
    request = {
        "baseModel": "meta-llama/Llama-3.3-70B-Instruct",
        "dataset": "s3://demo-bucket/support-chats.jsonl",
        "hyperparameters": {"learningRate": 0.0001, "epochs": 3, "batchSize": 64},
    }
    answer = httpx.post(f"{base}/admin/jobs", json=request, headers=auth, timeout=30)
    if answer.status_code != 201:
        print(f"submission failed: {answer.status_code} {answer.text}", file=sys.stderr)
        return 1
    job = answer.json()
    print(f"submitted job {job['id']} (LLMTune job {job['llmtuneJobId']})")
    print(f"  callback   {job['webhookUrl']}")
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}/admin/jobs/{job['id']}", headers=auth, timeout=10).json()
        for line in _lines_for(job, seen):
            print(line, flush=True)
        if _finished(job):
            return 0
        time.sleep(0.5)
    print(f"the job did not reach deployed with a smoke test in {timeout:g} s", file=sys.stderr)
    return 1
