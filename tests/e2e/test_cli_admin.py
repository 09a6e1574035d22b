"""`events|deliveries|jobs list|show` and `tail` as real processes against a real `serve` (with
its worker and a `log` route) on SQLite: tables and `--json`, the API's errors as
one line and exit 1, bad arguments exit 2; `tail` prints what is stored after it started and
stops on SIGTERM with 0; a server with a `tail` attached still stops at once."""

from __future__ import annotations

import json
import os
import pty
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.server import Server, free_port, receiver_env, run_cli, running_server
from tests.helpers import ADMIN_TOKEN, AUTH, SQLITE_ONLY, w3_body, w3_headers

pytestmark = pytest.mark.e2e

ROUTES = '[[routes]]\nname = "log"\nevents = ["*"]\nhandler = "log"\n'
WAIT = 20.0
# Well inside `serve`'s 10 s graceful-shutdown timeout: an open stream must not use it up.
PROMPT_STOP_SECONDS = 5.0


@dataclass
class Service:
    """The running server, the CLI's environment, and the directory both run in."""

    server: Server
    env: dict[str, str]
    cwd: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`python -m service ARGS --url <server>` (token from ADMIN_TOKENS)."""
        return run_cli([*args, "--url", self.server.base_url], cwd=self.cwd, env=self.env)

    def post(self, event: str, job_id: str) -> str:
        """A signed W3 webhook; the stored event's id."""
        body = w3_body(event, job_id)
        answer = httpx.post(self.server.webhook_url, content=body, headers=w3_headers(body))
        assert answer.status_code == 200, answer.text
        event_id: str = answer.json()["eventId"]
        return event_id

    def delivered(self, event_id: str) -> dict[str, Any]:
        """The event's delivery once it has succeeded (the worker runs in `serve`)."""
        deadline = time.monotonic() + WAIT
        while True:
            items = httpx.get(
                f"{self.server.base_url}/admin/deliveries",
                params={"eventId": event_id},
                headers=AUTH,
            ).json()["items"]
            if items and items[0]["status"] == "succeeded":
                found: dict[str, Any] = items[0]
                return found
            assert time.monotonic() < deadline, "not delivered in time"
            time.sleep(0.1)


@pytest.fixture
def service(engine: AsyncEngine, db_url: str, tmp_path: Path) -> Iterator[Service]:
    (tmp_path / "routes.toml").write_text(ROUTES)
    env = receiver_env(db_url) | {
        "ROUTES_FILE": str(tmp_path / "routes.toml"),
        "WORKER_POLL_SECONDS": "0.05",
    }
    env.pop("COLUMNS", None)  # whole lines: the CLI's output goes to a pipe here
    with running_server(tmp_path, env) as server:
        yield Service(server, env, tmp_path)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command's only stderr line."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@SQLITE_ONLY
def test_lists_and_details_as_tables_and_json(service: Service) -> None:
    """Each resource lists and shows as a table/text and as the API's JSON, untouched."""
    started = service.post("training.started", "job-cli")
    completed = service.post("training.completed", "job-cli")
    delivery = service.delivered(completed)

    table = service.cli("events", "list")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["RECEIVED", "(UTC)", "ID", "TYPE"]
    assert [row.split()[2] for row in rows] == [completed, started]
    assert rows[0].split()[3:5] == ["training.completed", "job-cli"]

    page = json.loads(service.cli("events", "list", "--type", "training.started", "--json").stdout)
    assert ([item["id"] for item in page["items"]], page["nextCursor"]) == ([started], None)

    shown = service.cli("events", "show", completed)
    assert f"id:              {completed}" in shown.stdout.splitlines()
    assert "deliveries (1):" in shown.stdout
    detail = json.loads(service.cli("events", "show", completed, "--json").stdout)
    assert detail["payload"]["event"] == "training.completed"

    listed = json.loads(service.cli("deliveries", "list", "--event-id", completed, "--json").stdout)
    assert [(d["id"], d["route"], d["status"]) for d in listed["items"]] == [
        (delivery["id"], "log", "succeeded")
    ]
    attempts = service.cli("deliveries", "show", delivery["id"])
    assert "attempts (1):" in attempts.stdout
    assert "ok" in attempts.stdout.splitlines()[-1].split()

    jobs = service.cli("jobs", "list", "--status", "completed")
    assert jobs.stdout.splitlines()[1].split()[3:5] == ["job-cli", "completed"]
    job = json.loads(service.cli("jobs", "show", "job-cli", "--json").stdout)
    assert [event["id"] for event in job["events"]] == [started, completed]


def on_a_terminal(args: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """`python -m service ARGS` with its stdout on a pseudo-terminal; (exit, what it showed)."""
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "service", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.DEVNULL,
    ) as process:
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the process closed the terminal's last writer
                break
            if not chunk:
                break
            shown += chunk
        os.close(leader)
        return process.wait(timeout=30), shown.decode().replace("\r\n", "\n")


@SQLITE_ONLY
def test_tables_are_cut_on_a_terminal_and_whole_in_a_pipe(service: Service) -> None:
    """On a terminal (COLUMNS=50) no line of a table is wider; into a pipe, COLUMNS or not,
    the line and the job id in it are whole."""
    long_job = "job-" + "w" * 80
    service.post("training.started", long_job)
    args = ["events", "list", "--url", service.server.base_url]
    code, shown = on_a_terminal(args, cwd=service.cwd, env=service.env | {"COLUMNS": "50"})
    assert code == 0
    lines = shown.splitlines()
    assert len(lines) == 2
    assert all(len(line) <= 50 for line in lines)
    assert lines[1].endswith("…")

    piped = run_cli(args, cwd=service.cwd, env=service.env | {"COLUMNS": "50"})
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.splitlines()[1].split()[4] == long_job


@SQLITE_ONLY
def test_api_errors_print_one_line_and_exit_1(service: Service) -> None:
    """An unknown id and a wrong token answer in the API's shape: its message, exit 1; a
    service that is not there: one line, exit 1."""
    missing = service.cli("events", "show", "evt_00000000000000000000000000000000")
    assert missing.returncode == 1
    assert one_line(missing) == (
        "llmtune-receiver: no event 'evt_00000000000000000000000000000000' (404 NOT_FOUND)"
    )
    assert missing.stdout == ""

    unknown_job = service.cli("jobs", "show", "no such job")
    assert (unknown_job.returncode, one_line(unknown_job)) == (
        1,
        "llmtune-receiver: no job 'no such job' (404 NOT_FOUND)",
    )

    refused = service.cli("deliveries", "list", "--token", "wrong")
    assert refused.returncode == 1
    assert one_line(refused).endswith("(401 UNAUTHORIZED)")

    nobody = f"http://127.0.0.1:{free_port()}"
    gone = run_cli(["jobs", "list", "--url", nobody], cwd=service.cwd, env=service.env)
    assert gone.returncode == 1
    assert one_line(gone).startswith(f"llmtune-receiver: cannot reach {nobody}")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["events", "list", "--limit", "0"], id="limit-zero"),
        pytest.param(["events", "list", "--limit", "201"], id="limit-too-high"),
        pytest.param(["deliveries", "list", "--status", "lost"], id="unknown-status"),
        pytest.param(["jobs", "show"], id="no-id"),
        pytest.param(["events"], id="no-action"),
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str]) -> None:
    """argparse refuses them before any request."""
    result = run_cli(args, cwd=tmp_path, env=receiver_env("sqlite+aiosqlite:///unused.db"))
    assert result.returncode == 2
    assert "usage:" in result.stderr


class Tail:
    """A running `tail` process whose output lines are read by threads, with timeouts."""

    def __init__(self, service: Service, *extra: str) -> None:
        command = [sys.executable, "-m", "service", "tail", "--url", service.server.base_url]
        self.process = subprocess.Popen(
            [*command, *extra],
            cwd=service.cwd,
            env=service.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        self._pumps = [
            threading.Thread(target=_pump, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for pump in self._pumps:
            pump.start()

    def line(self, lines: queue.Queue[str], containing: str) -> str:
        """The next line of `lines` containing `containing`, waiting at most WAIT seconds."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line with {containing!r} within {WAIT} s", pytrace=False)
            if containing in line:
                return line

    def stop(self) -> int:
        """SIGTERM; its exit status (SIGKILL and a failure if it does not end in 10 s). Its
        pipes are read to the end and closed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            pytest.fail("tail did not stop on SIGTERM", pytrace=False)
        finally:
            for pump in self._pumps:
                pump.join(timeout=10)
            for pipe in (self.process.stdout, self.process.stderr):
                if pipe is not None:
                    pipe.close()
        return code


def _pump(stream: IO[str] | None, lines: queue.Queue[str]) -> None:
    assert stream is not None
    for line in stream:
        lines.put(line.rstrip("\n"))


@pytest.fixture
def tail(service: Service) -> Iterator[Tail]:
    running = Tail(service)
    try:
        running.line(running.err, "following")
        yield running
    finally:
        running.stop()


@SQLITE_ONLY
def test_tail_prints_new_events_and_outcomes_and_stops_on_sigterm(
    service: Service, tail: Tail
) -> None:
    """An event posted after `tail` started is printed, then its delivery's outcome; SIGTERM
    ends it with 0."""
    event_id = service.post("training.completed", "job-tail")
    event_line = tail.line(tail.out, event_id)
    assert event_line.split()[2:5] == ["event", event_id, "training.completed"]
    outcome = tail.line(tail.out, "succeeded")
    assert f"event={event_id}" in outcome
    assert tail.stop() == 0


@SQLITE_ONLY
def test_tail_json_lines(service: Service) -> None:
    """`--json`: one JSON object per line, the stream's data under `data`."""
    running = Tail(service, "--json")
    try:
        running.line(running.err, "following")
        event_id = service.post("training.started", "job-json")
        line = json.loads(running.line(running.out, event_id))
        assert (line["kind"], line["data"]["id"]) == ("event", event_id)
    finally:
        assert running.stop() == 0


@SQLITE_ONLY
def test_server_stops_at_once_with_a_tail_attached(service: Service, tail: Tail) -> None:
    """SIGTERM to `serve` is not held up by an open stream; `tail` says it lost the
    connection, keeps trying, and still exits 0 on SIGTERM."""
    started = time.monotonic()
    service.server.stop()
    assert time.monotonic() - started < PROMPT_STOP_SECONDS
    assert service.server.process.returncode == 0
    tail.line(tail.err, "connection lost")
    assert tail.process.poll() is None
    assert tail.stop() == 0


def test_tail_without_a_service_exits_1(tmp_path: Path) -> None:
    """The first connection must work: nothing there is one line and exit 1."""
    url = f"http://127.0.0.1:{free_port()}"
    env = receiver_env("sqlite+aiosqlite:///unused.db")
    result = run_cli(["tail", "--url", url, "--token", ADMIN_TOKEN], cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert one_line(result).startswith(f"llmtune-receiver: cannot follow {url}")
