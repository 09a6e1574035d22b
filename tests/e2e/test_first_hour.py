"""A new user's first hour, through real processes on ports other than 8000: one URL setting, the
ready banner, one-line migrations, and loud misconfiguration."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from service.links import WEBHOOK_PATH
from service.store.migrate import heads
from tests.e2e.server import (
    HOST,
    Server,
    free_port,
    receiver_env,
    run_cli,
    service_env,
    wait_until_ready,
)
from tests.helpers import ADMIN_TOKEN, SECRET

pytestmark = pytest.mark.e2e

SCHEMA = ",".join(sorted(heads()))


def sqlite_url(folder: Path) -> str:
    """A SQLite file in `folder`."""
    return f"sqlite+aiosqlite:///{folder / 'receiver.db'}"


def wait_until_alive(server: Server) -> None:
    """Poll `GET /healthz` (an unmigrated server is alive, never ready) until 200."""
    with httpx.Client(base_url=server.base_url, timeout=1.0, trust_env=False) as client:
        for _ in range(400):
            assert server.process.poll() is None, server.log_text()
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    pytest.fail(f"the server did not answer; stderr:\n{server.log_text()}", pytrace=False)


@contextmanager
def serving(
    cwd: Path, env: Mapping[str, str], *args: str, port: int, ready: bool = True
) -> Iterator[Server]:
    """`python -m service serve ARGS` (no --host/--port unless given) on `port`, ready (or, with
    `ready=False`, alive); stopped by pid on exit."""
    log_path = cwd / "server.stderr.log"
    with log_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--no-init-env", *args],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    server = Server(process=process, port=port, log_path=log_path)
    try:
        if ready:
            wait_until_ready(server)
        else:
            wait_until_alive(server)
        yield server
    finally:
        server.stop()


def log_records(text: str) -> list[dict[str, object]]:
    """The JSON log lines of `text` (other lines skipped)."""
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def wait_for_record(server: Server, event: str) -> dict[str, object]:
    """The first log record named `event`, waiting for it to be written."""
    for _ in range(100):
        found = [r for r in log_records(server.log_text()) if r["event"] == event]
        if found:
            return found[0]
        time.sleep(0.05)
    pytest.fail(f"no {event} line; stderr:\n{server.log_text()}", pytrace=False)


def test_port_from_environment_and_banner(tmp_path: Path) -> None:
    """PORT in `.env` chooses the port; the banner names it for the console, the webhook and
    the next command, and migrations are one line."""
    port = free_port()
    (tmp_path / ".env").write_text(f"PORT={port}\n")
    env = receiver_env(sqlite_url(tmp_path)) | {"LOG_FORMAT": "console"}
    with serving(tmp_path, env, port=port) as server:
        base = f"http://{HOST}:{port}"
        for _ in range(100):
            if "next:" in server.log_text():
                break
            time.sleep(0.05)
        text = server.log_text()
    assert f"llmtune-receiver is ready on {base} (schema {SCHEMA}, " in text, text
    assert f"console:  {base}/admin/console" in text
    assert f"webhooks: {base}{WEBHOOK_PATH}" in text
    assert f"next:     llmtune-receiver send-test-event --url {base}" in text
    assert "Running upgrade" not in text


def test_public_url_defaults_to_bound_address(tmp_path: Path) -> None:
    """Without PUBLIC_URL, a job's callback URL and the logged webhook URL name the bound port."""
    port = free_port()
    env = receiver_env(sqlite_url(tmp_path)) | {"PORT": str(port)}
    with serving(tmp_path, env, port=port) as server:
        ready = wait_for_record(server, "ready")
    assert ready["webhooks"] == f"http://{HOST}:{port}{WEBHOOK_PATH}"
    assert ready["next"] == f"llmtune-receiver send-test-event --url http://{HOST}:{port}"


def test_public_url_on_another_port_warns_once(tmp_path: Path) -> None:
    """PUBLIC_URL naming another port than the bound one, with jobs on, is one warning."""
    port = free_port()
    env = receiver_env(sqlite_url(tmp_path)) | {
        "PUBLIC_URL": "http://127.0.0.1:8000",
        "LLMTUNE_API_KEY": "key",
        "LLMTUNE_API_URL": f"http://{HOST}:{free_port()}/v1",
    }
    with serving(tmp_path, env, "--port", str(port), port=port) as server:
        wait_for_record(server, "ready")
        records = log_records(server.log_text())
    warnings = [r for r in records if r["event"] == "public_url_port_differs"]
    assert len(warnings) == 1, records
    assert "port 8000" in str(warnings[0]["message"])


def test_client_commands_read_receiver_url_from_env_file(tmp_path: Path) -> None:
    """`send-test-event` and `events list` find the service through LLMTUNE_RECEIVER_URL in
    `.env`; a base `--url` works as well as the full webhook path."""
    port = free_port()
    env = receiver_env(sqlite_url(tmp_path))
    client = tmp_path / "client"
    client.mkdir()
    (client / ".env").write_text(
        f"LLMTUNE_RECEIVER_URL=http://{HOST}:{port}\nWEBHOOK_SECRETS={SECRET}\n"
        f"ADMIN_TOKENS={ADMIN_TOKEN}\n"
    )
    with serving(tmp_path, env, "--port", str(port), port=port):
        sent = run_cli(["send-test-event"], cwd=client, env=service_env())
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith("200 "), sent.stdout
        base = run_cli(
            ["send-test-event", "--url", f"http://{HOST}:{port}", "--secret", SECRET],
            cwd=tmp_path,
            env=service_env(),
        )
        assert base.returncode == 0, base.stderr
        listed = run_cli(["events", "list", "--json"], cwd=client, env=service_env())
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["items"]) == 2


def test_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A busy port stops `serve` with exit 2 and one line, before the app starts."""
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            ["serve", "--no-init-env", "--port", str(port)],
            cwd=tmp_path,
            env=receiver_env(sqlite_url(tmp_path)),
        )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line == (
        f"llmtune-receiver: cannot listen on {HOST}:{port}: the port is already in use "
        "(choose another with --port or PORT)"
    )


@pytest.mark.parametrize("once", [True, False], ids=["once", "forever"])
def test_worker_on_unmigrated_database_exits(tmp_path: Path, once: bool) -> None:
    """`worker` on a database never migrated exits 2 with one line naming the fix."""
    args = ["worker", "--once"] if once else ["worker"]
    result = run_cli(args, cwd=tmp_path, env=receiver_env(sqlite_url(tmp_path)))
    assert result.returncode == 2, result.stderr
    [line] = [text for text in result.stderr.splitlines() if not text.startswith("{")]
    assert "is not migrated (schema none" in line
    assert line.endswith("run `llmtune-receiver migrate`")
    assert str(tmp_path / "receiver.db") in line


def test_no_migrate_on_unmigrated_database_says_so(tmp_path: Path) -> None:
    """`serve --no-migrate` on an unmigrated database answers 503 naming the fix, and logs it
    once per missing table rather than every poll."""
    port = free_port()
    env = receiver_env(sqlite_url(tmp_path))
    with serving(
        tmp_path, env, "--no-migrate", "--port", str(port), port=port, ready=False
    ) as server:
        answer = httpx.get(
            f"{server.base_url}/admin/events", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        time.sleep(2.5)  # a few worker polls
        records = log_records(server.log_text())
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["message"] == "the database is not migrated: run `llmtune-receiver migrate`"
    assert error["details"]["reason"] == "migrations_pending"
    told = [r for r in records if r["event"] == "database_not_migrated"]
    tables = [r.get("table") for r in told]
    assert len(tables) == len(set(tables)), told
    assert not [r for r in records if r["event"] == "store_unavailable"]


def test_unknown_route_event_is_refused_with_the_known_names(tmp_path: Path) -> None:
    """A route naming no known event type stops start-up naming the file and the known types;
    CUSTOM_EVENT_TYPES lets it through."""
    routes = tmp_path / "routes.toml"
    routes.write_text('[[routes]]\nname = "x"\nevents = ["training.complete"]\nhandler = "log"\n')
    env = receiver_env(sqlite_url(tmp_path)) | {"ROUTES_FILE": str(routes)}
    refused = run_cli(["worker", "--once"], cwd=tmp_path, env=env)
    assert refused.returncode == 2
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"llmtune-receiver: routes: {routes}: route 'x': 'training.complete'")
    assert "training.completed" in line
    assert "CUSTOM_EVENT_TYPES" in line
    assert run_cli(["migrate"], cwd=tmp_path, env=env).returncode == 0
    custom = env | {"CUSTOM_EVENT_TYPES": "training.complete"}
    accepted = run_cli(["worker", "--once"], cwd=tmp_path, env=custom)
    assert accepted.returncode == 0, accepted.stderr


def test_migrate_names_the_sqlite_file_and_summarizes(tmp_path: Path) -> None:
    """`migrate` names the SQLite file it cannot open, and says what it did in one line."""
    missing = tmp_path / "no-such-folder" / "receiver.db"
    env = receiver_env(f"sqlite+aiosqlite:///{missing}")
    failed = run_cli(["migrate"], cwd=tmp_path, env=env)
    assert failed.returncode == 1
    assert f"SQLite file {missing}: unable to open database file" in failed.stderr
    env = receiver_env(sqlite_url(tmp_path))
    first = run_cli(["migrate"], cwd=tmp_path, env=env)
    again = run_cli(["migrate"], cwd=tmp_path, env=env)
    applied = int(SCHEMA)  # revisions are numbered from 0001 on one line
    assert first.stdout == f"llmtune-receiver: schema {SCHEMA}, {applied} applied\n"
    assert again.stdout == f"llmtune-receiver: schema {SCHEMA}, up to date\n"


def test_demo_reports_progress_and_ends_true(tmp_path: Path) -> None:
    """`demo --port` says each step on its own line, and its last line holds after it exits."""
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "service", "demo", "--port", str(port), "--step", "0.2"],
        cwd=tmp_path,
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("demo: starting a fake LLMTune")
    assert lines[1].startswith(f"demo: starting the receiver on http://{HOST}:{port}")
    assert f"callback   http://{HOST}:{port}/webhooks/llmtune/jobs/" in result.stdout
    assert lines[-1].startswith("demo: done:")
    with socket.socket() as check:
        # The receiver is gone: its port can be bound again (past its connections' TIME_WAIT).
        check.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        check.bind((HOST, port))
