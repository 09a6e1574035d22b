"""Dispatch workers as real processes: two sharing PostgreSQL's queue, one SIGKILLed mid-delivery
and redone after its lease, and `worker` and `serve` stopping on SIGTERM with an attempt in flight.

Deliveries go through the `http` handler to a recording sink on 127.0.0.1, in the test's event
loop; so every wait here is an `await` (processes are polled, never waited on while blocking).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from service.store.tables import ATTEMPTS, DELIVERIES
from tests.e2e.server import WEBHOOK_PATH, Server, free_port, receiver_env, running_server
from tests.helpers import (
    emptied_engine,
    make_settings,
    post_webhook,
    running_app,
    w3_body,
    w3_headers,
)
from tests.sinks import HttpSink, Reply, http_sink
from tests.waiting import until

pytestmark = pytest.mark.e2e

FORWARD_SECRET = "whsec_" + base64.b64encode(b"e2e-forward-secret-of-32-bytes!!").decode()
LIFECYCLE = ("training.started", "training.completed", "model.deployed")
JOBS = 20
START_WITHIN = 20.0  # a process imports everything and connects before it logs worker_started
EXIT_WITHIN = 10.0
GRACE_SECONDS = 10.0  # WorkerConfig.grace_seconds: in-flight attempts get this long on stop
LEASE_SECONDS = 2  # WORKER_LEASE_SECONDS of the killed worker (its attempts time out at 1 s)
# Longer than the killed worker's attempt may last (half its lease), so no answer could ever
# reach it in time; no longer, because the sink's shutdown waits for this sleeping reply.
NEVER_ANSWERED = LEASE_SECONDS / 2 + 0.5
SLOW_ANSWER = 1.0  # well inside the grace period


async def exit_code(process: subprocess.Popen[bytes], within: float = EXIT_WITHIN) -> int:
    """The process's exit code once it has exited (fail after `within` s)."""
    await until(lambda: process.poll() is not None, within, f"process {process.pid} exits")
    code = process.poll()
    assert code is not None
    return code


def json_records(text: str) -> list[dict[str, Any]]:
    """The complete JSON log lines of `text` (a line still being written is left out)."""
    lines = text.split("\n")[:-1]
    return [json.loads(line) for line in lines if line.startswith("{")]


def named(records: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    """The log records whose `event` is `event`."""
    return [record for record in records if record.get("event") == event]


@dataclass(frozen=True, slots=True)
class WorkerProcess:
    """A running `python -m service worker` and where its stderr goes."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        """Everything the worker has written to stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Its JSON log records so far."""
        return json_records(self.log_text())


def spawn_worker(
    cwd: Path, env: dict[str, str], name: str, args: Sequence[str] = ()
) -> WorkerProcess:
    """Start `python -m service worker ARGS` (fork and exec only: it does not wait)."""
    log_path = cwd / f"{name}.stderr.log"
    with log_path.open("wb") as stderr, (cwd / f"{name}.stdout.log").open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "worker", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    return WorkerProcess(process, log_path)


class Workers:
    """The worker processes of one test, started in `cwd` with `env`."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.started: list[WorkerProcess] = []

    async def start(self, name: str, *args: str, **env: str) -> WorkerProcess:
        """Start a worker (logs in NAME.stderr.log) and return once it logged worker_started."""
        worker = spawn_worker(self.cwd, self.env | env, name, args)
        self.started.append(worker)
        process = worker.process

        def ready() -> bool:
            code = process.poll()
            if code is not None:
                pytest.fail(
                    f"worker {name} exited with {code} before it started; stderr:\n"
                    f"{worker.log_text()}",
                    pytrace=False,
                )
            return bool(named(worker.records(), "worker_started"))

        await until(ready, START_WITHIN, f"worker {name} logs worker_started")
        return worker

    async def kill_all(self) -> None:
        """SIGKILL (by pid) every worker still running, and reap it."""
        for worker in self.started:
            if worker.process.poll() is None:
                os.kill(worker.process.pid, signal.SIGKILL)
        for worker in self.started:
            await exit_code(worker.process)


@asynccontextmanager
async def worker_processes(cwd: Path, env: dict[str, str]) -> AsyncIterator[Workers]:
    """Workers for the test; whichever still runs at the end is killed."""
    workers = Workers(cwd, env)
    try:
        yield workers
    finally:
        await workers.kill_all()


async def started_server(stack: ExitStack, cwd: Path, env: dict[str, str], *args: str) -> Server:
    """`serve ARGS` ready (started in a thread: its readiness poll blocks), stopped by `stack`."""
    server: Server = await asyncio.to_thread(
        stack.enter_context, running_server(cwd, env, "--no-init-env", *args)
    )
    return server


def write_routes(directory: Path, sink: HttpSink) -> None:
    """routes.toml: the lifecycle events to the `http` handler, pointed at `sink`."""
    (directory / "routes.toml").write_text(
        "[[routes]]\n"
        'name = "forward"\n'
        'handler = "http"\n'
        'events = ["training.*", "model.deployed"]\n'
        f'options = {{ url = "{sink.url}/hook", secret = "{FORWARD_SECRET}", '
        "allow_private = true }\n",
        encoding="utf-8",
    )


def worker_env(db_url: str, **values: str) -> dict[str, str]:
    """A receiver on `db_url` with the routes file of its cwd and a 50 ms poll."""
    base = receiver_env(db_url) | {"ROUTES_FILE": "routes.toml", "WORKER_POLL_SECONDS": "0.05"}
    return base | values


async def store_event(db_url: str, engine: AsyncEngine, routes_dir: Path, job_id: str) -> None:
    """Ingest one `training.started` in process (no worker), so its delivery is pending."""
    settings = make_settings(db_url, routes_file=routes_dir / "routes.toml")
    async with running_app(settings, engine) as client:
        response = await post_webhook(client, w3_body("training.started", job_id))
        assert response.status_code == 200, response.text


async def only_delivery(engine: AsyncEngine) -> sa.RowMapping:
    """The one delivery row of the test."""
    async with engine.connect() as connection:
        rows = (await connection.execute(sa.select(DELIVERIES))).mappings().all()
    assert len(rows) == 1, rows
    return rows[0]


async def attempts_of(engine: AsyncEngine, delivery_id: str) -> list[sa.RowMapping]:
    """The recorded attempts of a delivery, first to last."""
    query = (
        sa.select(ATTEMPTS).where(ATTEMPTS.c.delivery_id == delivery_id).order_by(ATTEMPTS.c.number)
    )
    async with engine.connect() as connection:
        return list((await connection.execute(query)).mappings().all())


async def statuses(engine: AsyncEngine) -> list[str]:
    """The status of every delivery."""
    async with engine.connect() as connection:
        return list((await connection.scalars(sa.select(DELIVERIES.c.status))).all())


async def all_succeeded(engine: AsyncEngine, count: int) -> bool:
    """True once `count` deliveries exist and every one succeeded."""
    found = await statuses(engine)
    return len(found) == count and set(found) == {"succeeded"}


@pytest.fixture
async def pg_engine(postgresql_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the run's PostgreSQL database, emptied before the test."""
    engine = await emptied_engine(postgresql_url)
    yield engine
    await engine.dispose()


@pytest.mark.postgresql
async def test_two_workers_share_the_queue_exactly_once_in_job_order(
    pg_engine: AsyncEngine, postgresql_url: str, tmp_path: Path
) -> None:
    """Two worker processes on PostgreSQL deliver 60 events of 20 jobs: each exactly once, each
    job's started → completed → deployed in order, and both workers take part."""
    # Two attempts at a time per worker and a 50 ms answer: neither can hold the whole queue.
    env = worker_env(postgresql_url, WORKER_CONCURRENCY="2")
    with ExitStack() as stack:
        async with http_sink() as sink, worker_processes(tmp_path, env) as workers:
            sink.default = Reply(delay=0.05)
            write_routes(tmp_path, sink)
            started = await asyncio.gather(
                started_server(stack, tmp_path, env, "--no-worker"),
                workers.start("a"),
                workers.start("b"),
                return_exceptions=True,  # never leave the server's thread behind
            )
            for result in started:
                if isinstance(result, BaseException):
                    raise result
            server = started[0]
            assert isinstance(server, Server)

            async with httpx.AsyncClient(
                base_url=server.base_url, timeout=10, trust_env=False
            ) as client:

                async def post_lifecycle(job_id: str) -> None:
                    for event in LIFECYCLE:
                        # A deployment's dedup key is its deploymentId (else the model's).
                        extra = {"deploymentId": f"dep-{job_id}"} if event == LIFECYCLE[2] else {}
                        body = w3_body(event, job_id, **extra)
                        response = await client.post(
                            WEBHOOK_PATH, content=body, headers=w3_headers(body)
                        )
                        assert response.status_code == 200, response.text

                await asyncio.gather(*(post_lifecycle(f"job-share-{n:02}") for n in range(JOBS)))

            total = JOBS * len(LIFECYCLE)
            await until(lambda: all_succeeded(pg_engine, total), 20, f"{total} deliveries succeed")
            for worker in workers.started:
                os.kill(worker.process.pid, signal.SIGTERM)
            for worker in workers.started:
                assert await exit_code(worker.process) == 0, worker.log_text()
            received = list(sink.received)

    ids = [request.headers["webhook-id"] for request in received]
    assert len(ids) == total
    assert len(set(ids)) == total, "a delivery reached the sink twice"

    seen: defaultdict[str, list[str]] = defaultdict(list)
    for request in received:
        document = json.loads(request.body)
        seen[document["jobId"]].append(document["type"])
    assert seen == {f"job-share-{n:02}": list(LIFECYCLE) for n in range(JOBS)}

    done_by = [
        {
            record["delivery_id"]
            for record in named(worker.records(), "delivery_attempt")
            if record["status"] == "succeeded"
        }
        for worker in workers.started
    ]
    assert all(done_by), f"a worker delivered nothing: {[len(d) for d in done_by]}"
    assert not done_by[0] & done_by[1]
    assert done_by[0] | done_by[1] == set(ids)


async def test_killed_worker_delivery_is_redone_after_its_lease(
    engine: AsyncEngine, db_url: str, tmp_path: Path
) -> None:
    """A worker SIGKILLed mid-attempt leaves its delivery in flight; once the lease has expired
    another worker redoes it (same webhook-id), and it ends succeeded after 2 attempts."""
    env = worker_env(db_url, WORKER_LEASE_SECONDS=str(LEASE_SECONDS))
    async with http_sink() as sink, worker_processes(tmp_path, env) as workers:
        sink.script.append(Reply(delay=NEVER_ANSWERED))
        write_routes(tmp_path, sink)
        await store_event(db_url, engine, tmp_path, "job-kill")

        first = await workers.start("first")
        await sink.wait_for(1, within=10)
        os.kill(first.process.pid, signal.SIGKILL)
        assert await exit_code(first.process) == -signal.SIGKILL

        stranded = await only_delivery(engine)
        assert (stranded["status"], stranded["attempts"]) == ("in_flight", 1)
        assert stranded["lease_expires_at"] is not None
        assert await attempts_of(engine, stranded["id"]) == []  # it died before recording

        await workers.start("second")

        async def redone() -> bool:
            status: str = (await only_delivery(engine))["status"]
            return status != "in_flight"

        # Without lease expiry the delivery would stay in flight and this would fail.
        await until(redone, 10, "the stranded delivery is redone")
        final = await only_delivery(engine)
        assert (final["status"], final["attempts"]) == ("succeeded", 2)
        assert final["lease_expires_at"] is None
        [attempt] = await attempts_of(engine, final["id"])
        assert (attempt["number"], attempt["outcome"]) == (2, "ok")
        # Not taken over before the first worker's lease ran out.
        assert attempt["started_at"] >= stranded["lease_expires_at"]
        assert [r.headers["webhook-id"] for r in sink.received] == [final["id"]] * 2


async def test_worker_sigterm_finishes_the_attempt_in_flight(
    engine: AsyncEngine, db_url: str, tmp_path: Path
) -> None:
    """SIGTERM while the sink takes 1 s to answer: the worker lets the attempt finish within its
    grace period, records it succeeded, logs worker_stopped and exits 0."""
    async with http_sink() as sink, worker_processes(tmp_path, worker_env(db_url)) as workers:
        sink.script.append(Reply(delay=SLOW_ANSWER))
        write_routes(tmp_path, sink)
        await store_event(db_url, engine, tmp_path, "job-term")

        worker = await workers.start("graceful")
        await sink.wait_for(1, within=10)
        os.kill(worker.process.pid, signal.SIGTERM)
        assert await exit_code(worker.process, within=GRACE_SECONDS) == 0, worker.log_text()

    assert "Traceback" not in worker.log_text(), worker.log_text()
    events = [record["event"] for record in worker.records()]
    assert events[-2:] == ["delivery_attempt", "worker_stopped"], events
    [attempt_line] = named(worker.records(), "delivery_attempt")
    assert attempt_line["status"] == "succeeded"
    assert "delivery_released" not in events
    row = await only_delivery(engine)
    assert (row["status"], row["attempts"], row["lease_expires_at"]) == ("succeeded", 1, None)
    assert len(sink.received) == 1


async def test_serve_sigterm_drains_its_worker_cleanly(
    engine: AsyncEngine, db_url: str, tmp_path: Path
) -> None:
    """`serve` (worker inside) stops on SIGTERM with a delivery in flight: the attempt finishes,
    the shutdown completes, and stderr holds no traceback or error."""
    with ExitStack() as stack:
        async with http_sink() as sink:
            sink.script.append(Reply(delay=SLOW_ANSWER))
            write_routes(tmp_path, sink)
            server = await started_server(stack, tmp_path, worker_env(db_url))
            body = w3_body("training.started", "job-serve-term")
            async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
                response = await client.post(
                    server.webhook_url, content=body, headers=w3_headers(body)
                )
            assert response.status_code == 200, response.text

            await sink.wait_for(1, within=10)
            os.kill(server.process.pid, signal.SIGTERM)
            code = await exit_code(server.process, within=2 * GRACE_SECONDS)

    log = server.log_text()
    # A clean stop is exit 0 (uvicorn re-raises SIGTERM after its shutdown; serve absorbs it).
    assert code == 0, log
    assert "Traceback" not in log, log
    records = json_records(log)
    assert not [r for r in records if r.get("level") in ("error", "critical") or "exception" in r]
    events = [record["event"] for record in records]
    assert "Application shutdown complete." in events, log
    [attempt_line] = named(records, "delivery_attempt")
    assert attempt_line["status"] == "succeeded"
    row = await only_delivery(engine)
    assert (row["status"], row["attempts"], row["lease_expires_at"]) == ("succeeded", 1, None)


async def test_standalone_worker_serves_its_metrics(
    engine: AsyncEngine, db_url: str, tmp_path: Path
) -> None:
    """`worker --metrics-port P`: the delivery counters of a worker without a web server are
    scraped from P (judged by prometheus-client's own parser)."""
    port = free_port()
    async with http_sink() as sink:
        write_routes(tmp_path, sink)
        await store_event(db_url, engine, tmp_path, "job-metrics")
        async with worker_processes(tmp_path, worker_env(db_url)) as workers:
            await workers.start("w1", "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
            await until(lambda: len(sink.received) == 1, START_WITHIN, "the forward")

            def delivered() -> float | None:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        if sample.name == "llmtune_deliveries_total" and sample.labels == {
                            "route": "forward",
                            "status": "succeeded",
                        }:
                            return sample.value
                return None

            await until(lambda: delivered() == 1.0, START_WITHIN, "the counter on /metrics")
