"""The real `serve` process over real HTTP on 127.0.0.1: CLI, races, logs, config, first run."""

from __future__ import annotations

import asyncio
import json
import stat
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.http.admin.schemas import REDACTED
from service.webhooks.samples import Format
from service.webhooks.verify import sign
from tests.e2e.server import (
    HOST,
    WEBHOOK_PATH,
    Server,
    free_port,
    receiver_env,
    run_cli,
    running_server,
    service_env,
)
from tests.helpers import ADMIN_TOKEN, AUTH, SECRET, SQLITE_ONLY, w3_body, w3_headers

pytestmark = pytest.mark.e2e

# One event type per docs version, so the listing shows which delivery became which event.
EVENT_OF: dict[Format, str] = {
    "w3": "training.started",
    "w2": "training.completed",
    "w1": "training.failed",
}
SIGNATURE_HEADER_OF: dict[Format, str] = {
    "w3": "x-webhook-signature",
    "w2": "x-llmtune-signature",
    "w1": "x-llmtune-signature",
}
CONCURRENT_POSTS = 20
CONFIG_ERROR = "llmtune-receiver: configuration error: "


@pytest.fixture
def server(engine: AsyncEngine, db_url: str, tmp_path: Path) -> Iterator[Server]:
    """A configured receiver on `db_url` (emptied by `engine`), cwd and logs in `tmp_path`."""
    with running_server(tmp_path, receiver_env(db_url), "--no-init-env") as running:
        yield running


@pytest.fixture
def admin(server: Server) -> Iterator[httpx.Client]:
    """A client of the running server carrying the admin token."""
    with httpx.Client(
        base_url=server.base_url, headers=AUTH, timeout=10, trust_env=False
    ) as client:
        yield client


def send_test_event(server: Server, cwd: Path, *options: str) -> tuple[int, str]:
    """Run `send-test-event` against `server`; its exit code and stdout."""
    result = run_cli(
        ["send-test-event", "--url", server.webhook_url, *options], cwd=cwd, env=service_env()
    )
    return result.returncode, result.stdout


def events_listed(admin: httpx.Client) -> list[dict[str, Any]]:
    """The items of `GET /admin/events`."""
    response = admin.get("/admin/events")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` parsed as a JSON object (asserting each one is)."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"log line is not JSON: {line!r}", pytrace=False)
        assert isinstance(record, dict), line
        records.append(record)
    return records


@SQLITE_ONLY
def test_send_test_event_every_format(server: Server, admin: httpx.Client, tmp_path: Path) -> None:
    """`send-test-event` in W3, W2 and W1 exits 0 with 200, and each is listed verified by type."""
    for fmt, event in EVENT_OF.items():
        code, out = send_test_event(
            server,
            tmp_path,
            *("--secret", SECRET, "--format", fmt, "--event", event, "--job-id", f"job-e2e-{fmt}"),
        )
        assert code == 0, out
        assert out.startswith("200 "), out
        assert json.loads(out.removeprefix("200 "))["duplicate"] is False

    items = {item["jobId"]: item for item in events_listed(admin)}
    assert set(items) == {f"job-e2e-{fmt}" for fmt in EVENT_OF}
    for fmt, event in EVENT_OF.items():
        item = items[f"job-e2e-{fmt}"]
        assert (item["type"], item["verified"], item["duplicateCount"]) == (event, True, 0)

        response = admin.get(f"/admin/events/{item['id']}")
        assert response.status_code == 200, response.text
        detail = response.json()
        headers = {h["name"].lower(): h["value"] for h in detail["headers"]}
        assert headers[SIGNATURE_HEADER_OF[fmt]] == REDACTED
        # The signature the CLI sent is nowhere in the answer.
        assert sign(SECRET, detail["rawBody"].encode()) not in response.text


@SQLITE_ONLY
def test_send_test_event_wrong_secret(server: Server, admin: httpx.Client, tmp_path: Path) -> None:
    """`send-test-event` with a secret the receiver does not know exits non-zero with a 401."""
    code, out = send_test_event(server, tmp_path, "--secret", "whsec_bm90LXRoZS1zZWNyZXQ=")
    assert code != 0
    assert out.startswith("401 "), out
    assert json.loads(out.removeprefix("401 "))["error"]["code"] == "INVALID_SIGNATURE"
    assert events_listed(admin) == []


async def test_concurrent_duplicates_store_one_event(server: Server) -> None:
    """20 concurrent posts of one signed body: all 200, one original, duplicateCount 19."""
    body = w3_body(job_id="job-e2e-race")
    headers = w3_headers(body)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=15, trust_env=False) as client:
        responses = await asyncio.gather(
            *(
                client.post(WEBHOOK_PATH, content=body, headers=headers)
                for _ in range(CONCURRENT_POSTS)
            )
        )
        assert [r.status_code for r in responses] == [200] * CONCURRENT_POSTS, [
            r.text for r in responses
        ]
        answers = [r.json() for r in responses]
        assert [a["duplicate"] for a in answers].count(False) == 1
        event_ids = {a["eventId"] for a in answers}
        assert len(event_ids) == 1

        listing = await client.get("/admin/events", headers=AUTH)
        assert listing.status_code == 200, listing.text
        items = listing.json()["items"]
        assert [(i["id"], i["duplicateCount"]) for i in items] == [
            (event_ids.pop(), CONCURRENT_POSTS - 1)
        ]


@SQLITE_ONLY
def test_logs_are_json_with_request_ids_and_no_secrets(server: Server) -> None:
    """Every log line is JSON; each request writes one line with its id, client and outcome;
    no line carries a secret."""
    good = w3_body(job_id="job-e2e-logs")
    good_headers = w3_headers(good)
    forged = w3_body(job_id="job-e2e-forged")
    forged_headers = w3_headers(forged, secret="whsec_bm90LXRoZS1zZWNyZXQ=")
    with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as client:
        stored = client.post(WEBHOOK_PATH, content=good, headers=good_headers)
        rejected = client.post(WEBHOOK_PATH, content=forged, headers=forged_headers)
        listed = client.get("/admin/events", headers=AUTH)
    assert (stored.status_code, rejected.status_code, listed.status_code) == (200, 401, 200)
    # The access line is written after the answer is sent: stop the server to have every line.
    server.stop()
    text = server.log_text()

    by_request: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in json_lines(text):
        if "request_id" in record:
            by_request[record["request_id"]].append(record)

    [stored_line] = by_request[stored.headers["x-request-id"]]
    assert stored_line["event"] == "request"
    assert stored_line["level"] == "info"
    assert (stored_line["status"], stored_line["outcome"]) == (200, "stored")
    assert stored_line["event_id"] == stored.json()["eventId"]
    assert (stored_line["job_id"], stored_line["event_type"]) == (
        "job-e2e-logs",
        "training.completed",
    )
    assert stored_line["client"] == HOST
    assert stored_line["body_bytes"] == len(good)

    [rejected_line] = by_request[rejected.headers["x-request-id"]]
    assert rejected_line["level"] == "warning"
    assert (rejected_line["status"], rejected_line["outcome"]) == (401, "rejected_signature")
    assert rejected_line["reason"] == "signature_mismatch"

    secrets = {
        "the webhook secret": SECRET,
        "the webhook secret without its prefix": SECRET.removeprefix("whsec_"),
        "the valid signature": good_headers["X-Webhook-Signature"],
        "the forged signature": forged_headers["X-Webhook-Signature"],
        "the admin token": ADMIN_TOKEN,
    }
    leaked = [name for name, value in secrets.items() if value in text]
    assert leaked == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("WEBHOOK_SECRETS", "whsec_"),
        pytest.param("ADMIN_TOKENS", "a:write:x", id="short-admin-token"),
    ],
)
def test_config_error_names_the_variable(tmp_path: Path, variable: str, value: str) -> None:
    """A bad setting stops `serve` with exit code 2 and one stderr line naming the variable."""
    db_path = tmp_path / "receiver.db"
    env = service_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{db_path}",
        WEBHOOK_SECRETS=SECRET,
        ADMIN_TOKENS=ADMIN_TOKEN,
    )
    env[variable] = value
    result = run_cli(
        ["serve", "--host", HOST, "--port", str(free_port()), "--no-init-env"],
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{CONFIG_ERROR}{variable}"), lines[0]
    assert not db_path.exists()


@pytest.mark.parametrize("command", [["migrate"], ["serve", "--no-init-env", "--port", "1"]])
def test_unreachable_database_stops_with_one_line(tmp_path: Path, command: list[str]) -> None:
    """Migrations that cannot reach the database end with exit 1 and one line, no traceback."""
    env = service_env(
        DATABASE_URL=f"postgresql+asyncpg://postgres@{HOST}:{free_port()}/x",
        WEBHOOK_SECRETS=SECRET,
        ADMIN_TOKENS=ADMIN_TOKEN,
        LOG_LEVEL="warning",
    )
    result = run_cli(command, cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("llmtune-receiver: cannot apply migrations to PostgreSQL at "), (
        lines[0]
    )


def test_several_workers_need_postgresql(tmp_path: Path) -> None:
    """`serve --workers 2` on SQLite exits 2 with one line saying PostgreSQL is needed."""
    db_path = tmp_path / "receiver.db"
    env = service_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{db_path}",
        WEBHOOK_SECRETS=SECRET,
        ADMIN_TOKENS=ADMIN_TOKEN,
    )
    result = run_cli(
        ["serve", "--host", HOST, "--port", str(free_port()), "--no-init-env", "--workers", "2"],
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "PostgreSQL" in lines[0]
    assert not db_path.exists()


def test_first_run_writes_env_used_by_send_test_event(tmp_path: Path) -> None:
    """`serve --init-env` with nothing configured writes a 0600 `.env` the CLI then signs with,
    and a log that is not a terminal only says where the values are."""
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    env = service_env(DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'receiver.db'}")
    with running_server(workdir, env, "--init-env", logs=tmp_path) as server:
        env_file = workdir / ".env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        values = dict(
            line.split("=", 1) for line in env_file.read_text(encoding="utf-8").splitlines()
        )
        assert set(values) == {"WEBHOOK_SECRETS", "ADMIN_TOKENS"}
        secret, token = values["WEBHOOK_SECRETS"], values["ADMIN_TOKENS"]
        assert secret.startswith("whsec_")
        assert len(secret) > len("whsec_")
        assert token

        # stderr is a file here, as under a log collector: the values stay in .env only.
        log = server.log_text()
        assert secret not in log
        assert token not in log
        assert "saved to .env" in log

        code, out = send_test_event(server, workdir)
        assert code == 0, out
        assert out.startswith("200 "), out
        with httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
            trust_env=False,
        ) as admin:
            items = events_listed(admin)
        assert [(i["type"], i["verified"]) for i in items] == [("training.completed", True)]
