"""The real server at its edges: proxies and client addresses, slow senders, whole lifecycles."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.server import (
    HOST,
    WEBHOOK_PATH,
    Server,
    receiver_env,
    run_cli,
    running_server,
    service_env,
)
from tests.helpers import ADMIN_TOKEN, AUTH, SECRET, SQLITE_ONLY, w3_body, w3_headers

pytestmark = pytest.mark.e2e

PROXY_CLIENT = "203.0.113.9"


def request_lines(server: Server) -> list[dict[str, Any]]:
    """The `request` lines the (stopped) server wrote."""
    server.stop()
    records = [json.loads(line) for line in server.log_text().splitlines()]
    return [record for record in records if record["event"] == "request"]


def post_forwarded(server: Server, job_id: str) -> httpx.Response:
    body = w3_body(job_id=job_id)
    headers = w3_headers(body) | {"X-Forwarded-For": PROXY_CLIENT}
    with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as client:
        return client.post(WEBHOOK_PATH, content=body, headers=headers)


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("trusted", "logged_client"),
    [
        pytest.param(None, HOST, id="no-proxy-trusted"),
        pytest.param("127.0.0.1", PROXY_CLIENT, id="loopback-proxy-trusted"),
    ],
)
def test_client_address_believes_only_trusted_proxies(
    engine: AsyncEngine, db_url: str, tmp_path: Path, trusted: str | None, logged_client: str
) -> None:
    """X-Forwarded-For is believed only from a proxy listed in FORWARDED_ALLOW_IPS; by default a
    caller on 127.0.0.1 cannot choose the address its request is logged under."""
    env = receiver_env(db_url) | ({"FORWARDED_ALLOW_IPS": trusted} if trusted else {})
    with running_server(tmp_path, env, "--no-init-env") as server:
        response = post_forwarded(server, f"job-fwd-{trusted}")
        assert response.status_code == 200, response.text
        [line] = [r for r in request_lines(server) if r["path"] == WEBHOOK_PATH]
    assert line["client"] == logged_client


@SQLITE_ONLY
def test_stalled_upload_is_cut_off_with_408(
    engine: AsyncEngine, db_url: str, tmp_path: Path
) -> None:
    """A sender that sends headers and part of the body, then nothing, gets 408 at the deadline
    (not a connection held open for as long as it likes)."""
    env = receiver_env(db_url) | {"BODY_TIMEOUT_SECONDS": "0.5"}
    with running_server(tmp_path, env, "--no-init-env") as server:
        body = w3_body(job_id="job-slow")
        head = (
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Webhook-Signature: {w3_headers(body)['X-Webhook-Signature']}\r\n\r\n"
        ).encode()
        # Without a deadline the server would say nothing and recv would time out here.
        with socket.create_connection((HOST, server.port), timeout=10) as sock:
            sock.sendall(head + body[:10])
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        text = answer.decode()
        assert text.startswith("HTTP/1.1 408 "), text
        assert '"code":"REQUEST_TIMEOUT"' in text
        with httpx.Client(base_url=server.base_url, headers=AUTH, trust_env=False) as admin:
            assert admin.get("/admin/events").json()["items"] == []


@SQLITE_ONLY
@pytest.mark.parametrize("fmt", ["w3", "w1"])
def test_send_test_event_lifecycle_deploys_a_job(
    engine: AsyncEngine, db_url: str, tmp_path: Path, fmt: str
) -> None:
    """`send-test-event --lifecycle` plays started → completed → deployed for one job, and the
    job ends `deployed` (in W1 too: each event has its own id)."""
    with running_server(tmp_path, receiver_env(db_url), "--no-init-env") as server:
        result = run_cli(
            [
                "send-test-event",
                *("--url", server.webhook_url, "--secret", SECRET, "--format", fmt),
                "--lifecycle",
            ],
            cwd=tmp_path,
            env=service_env(),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert [line.split(" ", 2)[:2] for line in lines] == [
            ["training.started", "200"],
            ["training.completed", "200"],
            ["model.deployed", "200"],
        ]
        assert all('"duplicate":false' in line for line in lines), lines
        with httpx.Client(base_url=server.base_url, headers=AUTH, trust_env=False) as admin:
            [job] = admin.get("/admin/jobs").json()["items"]
    assert job["status"] == "deployed"
    assert None not in (job["startedAt"], job["finishedAt"], job["deployedAt"])


@SQLITE_ONLY
def test_probes_log_at_debug_only(engine: AsyncEngine, db_url: str, tmp_path: Path) -> None:
    """Health checks and scrapes write no line at info; a webhook still does."""
    with running_server(tmp_path, receiver_env(db_url), "--no-init-env") as server:
        with httpx.Client(base_url=server.base_url, trust_env=False) as client:
            for path in ("/healthz", "/readyz", "/metrics"):
                assert client.get(path).status_code == 200
        lines = request_lines(server)
    # wait_until_ready polled /readyz too: none of those lines is there either.
    assert [line["path"] for line in lines] == []


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        pytest.param(
            '[[routes]]\nname = "pager"\nevents = ["*"]\nhandler = "pager"\n',
            "routes: route 'pager': unknown handler 'pager' "
            "(known: email, http, inference, log, slack)",
            id="unknown-handler",
        ),
        pytest.param(
            '[[routes]]\nname = "s"\nevents = ["*"]\nhandler = "slack"\n'
            'options = { webhook_url = "${NOT_SET_ANYWHERE}" }\n',
            "routes: routes.toml: route 's': ${NOT_SET_ANYWHERE} is not set in the environment",
            id="missing-variable",
        ),
        pytest.param(
            '[[routes]]\nname = "fwd"\nevents = ["*"]\nhandler = "http"\n'
            'options = { url = "https://ops.example.com/in", signing = "v1a", '
            'private_key = "whsk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }\n',
            "routes: route 'fwd': private_key: must encode 32 bytes (the seed) or 64 "
            "(seed and public key), not 24",
            id="bad-private-key",
        ),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_bad_routes_file_stops_with_one_line(
    tmp_path: Path, routes: str, expected: str, command: str
) -> None:
    """`serve` and `worker` refuse an unusable routes file before starting: exit 2, one line."""
    (tmp_path / "routes.toml").write_text(routes)
    db_path = tmp_path / "receiver.db"
    env = service_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{db_path}",
        WEBHOOK_SECRETS=SECRET,
        ADMIN_TOKENS=ADMIN_TOKEN,
    )
    extra = ["--no-init-env", "--port", "1"] if command == "serve" else []
    result = run_cli([command, *extra], cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == f"llmtune-receiver: {expected}"
    assert not db_path.exists()
