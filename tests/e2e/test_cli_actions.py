"""`deliveries retry|retry-dead`, whole ids in piped tables, and a closed pipe, as real processes
against a real `serve` (with its worker) on SQLite and PostgreSQL. Its one route forwards over
`http` to a recording sink, signed with a secret `keys generate --hmac` printed, and gives up
after one attempt, so a sink answering 500 makes dead deliveries to retry."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks.webhooks import Webhook

from service.cli import BROKEN_PIPE_EXIT
from tests.e2e.server import Server, receiver_env, run_cli, running_server, service_env
from tests.helpers import AUTH, w3_body, w3_headers
from tests.sinks import HttpSink, Reply, http_sink
from tests.waiting import until

pytestmark = pytest.mark.e2e

# Longer than the tables' 24-character job column: piped, it must still come out whole.
LONG_JOB = "ft-job-" + "0123456789abcdef" * 3
WAIT = 20.0


@dataclass
class Forwarding:
    """The running server, its sink, the route's secret, and where the CLI runs."""

    server: Server
    sink: HttpSink
    secret: str
    env: dict[str, str]
    cwd: Path

    async def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`python -m service ARGS --url <server>`, off the event loop (the sink runs on it)."""
        argv = [*args, "--url", self.server.base_url]
        return await asyncio.to_thread(run_cli, argv, cwd=self.cwd, env=self.env)

    async def post(self, event: str, job_id: str = LONG_JOB) -> str:
        """A signed W3 webhook; the stored event's id."""
        body = w3_body(event, job_id)
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                self.server.webhook_url, content=body, headers=w3_headers(body)
            )
        assert answer.status_code == 200, answer.text
        event_id: str = answer.json()["eventId"]
        return event_id

    async def delivery(self, event_id: str, status: str) -> dict[str, Any]:
        """The event's delivery once it is in `status`."""
        found: list[dict[str, Any]] = []

        async def reached() -> bool:
            async with httpx.AsyncClient(base_url=self.server.base_url, headers=AUTH) as client:
                answer = await client.get("/admin/deliveries", params={"eventId": event_id})
            found[:] = [item for item in answer.json()["items"] if item["status"] == status]
            return bool(found)

        await until(reached, WAIT, f"the delivery of {event_id} is {status}", step=0.1)
        return found[0]


def generated_secret(cwd: Path) -> str:
    """`keys generate --hmac --json` run as a process: the secret it printed."""
    done = run_cli(["keys", "generate", "--hmac", "--json"], cwd=cwd, env=service_env())
    assert (done.returncode, done.stderr) == (0, "")
    secret: str = json.loads(done.stdout)["secret"]
    return secret


def routes(sink: HttpSink, secret: str) -> str:
    return f"""
[[routes]]
name = "forward"
events = ["training.*"]
handler = "http"
max_attempts = 1
options = {{ url = "{sink.url}/hook", secret = "{secret}", allow_private = true }}
"""


@pytest.fixture
async def forwarding(engine: AsyncEngine, db_url: str, tmp_path: Path) -> AsyncIterator[Forwarding]:
    secret = generated_secret(tmp_path)
    async with http_sink() as sink:
        sink.default = Reply(status=500, body="down")
        (tmp_path / "routes.toml").write_text(routes(sink, secret))
        env = receiver_env(db_url) | {
            "ROUTES_FILE": str(tmp_path / "routes.toml"),
            "WORKER_POLL_SECONDS": "0.05",
        }
        env.pop("COLUMNS", None)
        # The server's start-up checks the route's options, the generated secret included.
        with running_server(tmp_path, env) as server:
            yield Forwarding(server, sink, secret, env, tmp_path)


def table_ids(stdout: str, column: str) -> list[str]:
    """The values of one column of a piped table (whole lines: cut at the column's start)."""
    header, *rows = stdout.splitlines()
    start = header.index(column)
    return [row[start:].split()[0] for row in rows]


async def test_dead_deliveries_are_retried_by_the_ids_a_table_printed(
    forwarding: Forwarding,
) -> None:
    """Piped tables print whole ids (ours and LLMTune's job id) that `deliveries retry` and
    `jobs show` take as pasted; retry, then retry-dead, deliver the dead ones, each signed so
    the Standard Webhooks library verifies it with the generated secret."""
    started = await forwarding.post("training.started")
    completed = await forwarding.post("training.completed")
    first = (await forwarding.delivery(started, "dead"))["id"]
    second = (await forwarding.delivery(completed, "dead"))["id"]

    listed = await forwarding.cli("deliveries", "list", "--status", "dead")
    assert listed.returncode == 0, listed.stderr
    assert table_ids(listed.stdout, "ID") == [second, first], listed.stdout
    events = await forwarding.cli("events", "list")
    # Besides the two posted, the service's own events about the dead deliveries name the job.
    assert set(table_ids(events.stdout, "JOB")) == {LONG_JOB}
    jobs = await forwarding.cli("jobs", "list")
    [pasted] = table_ids(jobs.stdout, "LLMTUNE JOB")
    shown = await forwarding.cli("jobs", "show", pasted, "--json")
    assert json.loads(shown.stdout)["llmtuneJobId"] == LONG_JOB

    forwarding.sink.default = Reply()
    retried = await forwarding.cli("deliveries", "retry", table_ids(listed.stdout, "ID")[1])
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.splitlines()[0] == f"delivery {first} is due again; a worker delivers it"
    await forwarding.delivery(started, "succeeded")
    [received] = forwarding.sink.received[-1:]
    document = Webhook(forwarding.secret).verify(received.body, received.headers)
    assert document["id"] == started

    again = await forwarding.cli("deliveries", "retry", first)
    assert again.returncode == 1
    assert again.stderr.strip().endswith("(409 CONFLICT)")

    bulk = await forwarding.cli("deliveries", "retry-dead", "--route", "forward", "--json")
    assert (bulk.returncode, json.loads(bulk.stdout)) == (0, {"retried": 1})
    await forwarding.delivery(completed, "succeeded")
    none_left = await forwarding.cli("deliveries", "retry-dead")
    assert none_left.stdout == "0 dead deliveries due again; a worker delivers them\n"


def closed_pipe_run(argv: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """`python -m service ARGV` writing into a pipe nobody reads any more; (exit, stderr)."""
    with subprocess.Popen(
        [sys.executable, "-m", "service", *argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()
        stderr = process.stderr.read().decode()
        return process.wait(timeout=60), stderr


async def test_a_closed_pipe_ends_every_command_quietly(forwarding: Forwarding) -> None:
    """`| head -1` that has stopped reading: each command ends with 141 and says nothing."""
    event = await forwarding.post("training.completed")
    delivery = (await forwarding.delivery(event, "dead"))["id"]
    url = ["--url", forwarding.server.base_url]
    commands = [
        ["--help"],
        ["keys", "generate", "--hmac"],
        ["events", "list", *url],
        ["events", "show", event, *url],
        ["deliveries", "list", "--json", *url],
        ["deliveries", "show", delivery, *url],
        ["jobs", "list", *url],
        ["jobs", "show", LONG_JOB, *url],
        ["deliveries", "retry-dead", "--route", "nothing", *url],
    ]
    for argv in commands:
        code, stderr = await asyncio.to_thread(
            closed_pipe_run, argv, forwarding.env, forwarding.cwd
        )
        assert (code, stderr) in ((0, ""), (BROKEN_PIPE_EXIT, "")), argv


async def test_tail_into_a_closed_pipe_ends_quietly(forwarding: Forwarding) -> None:
    """`tail | head -1`: the first line it prints after the reader left ends it with 141 and
    no traceback (stderr holds only its note that it is following)."""
    url = forwarding.server.base_url
    with subprocess.Popen(  # noqa: ASYNC220 - polled, never waited on while it runs
        [sys.executable, "-m", "service", "tail", "--url", url],
        cwd=forwarding.cwd,
        env=forwarding.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()
        deadline = time.monotonic() + WAIT
        try:
            # Until `tail` is connected, what is posted goes unseen: post until it has ended.
            for posted in itertools.count():
                if process.poll() is not None:
                    break
                assert time.monotonic() < deadline, "tail did not end"
                await forwarding.post("training.started", f"job-tail-{posted}")  # each one new
                await asyncio.sleep(0.2)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.wait() == BROKEN_PIPE_EXIT
        assert process.stderr.read().splitlines() == [
            f"llmtune-receiver: following {url} (Ctrl-C to stop)"
        ]
