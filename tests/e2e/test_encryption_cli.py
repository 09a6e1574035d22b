"""Encryption at rest end to end, on both databases, with real processes: a `serve` with
ENCRYPTION_KEYS stores a body whose text the database's own client (`sqlite3`, `psql`) cannot
find, while the admin API shows it unchanged; `rotate-keys` under a new first key, run while a
server takes more webhooks; then a server with only the new key reads everything, and starts
with the old key alone, or none, are refused with one line."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import httpx
import orjson
import pytest

from service.crypto.sealing import generate_key, parse_key
from tests.e2e.server import free_port, receiver_env, run_cli, running_server
from tests.helpers import AUTH, w3_body, w3_headers

pytestmark = pytest.mark.e2e

MARKER = "s3://private-bucket/customer-42/train.jsonl?X-Amz-Signature=c0ffee"
OLD = generate_key()
NEW = generate_key()


def dump_events(db_url: str) -> bytes:
    """The events table as the database's own command-line client prints it."""
    if db_url.startswith("sqlite"):
        path = db_url.split(":///", 1)[1]
        command = [_tool("sqlite3"), path, "SELECT * FROM events;"]
    else:
        libpq = db_url.replace("postgresql+asyncpg://", "postgresql://")
        command = [_tool("psql"), libpq, "-At", "-c", "SELECT * FROM events"]
    return subprocess.run(command, capture_output=True, check=True, timeout=30).stdout


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found is not None, f"{name} is needed (Debian's package; installed by .ci/run)"
    return found


def post(client: httpx.Client, job: str) -> tuple[str, bytes]:
    body = w3_body("training.started", job, dataset=MARKER)
    response = client.post("/webhooks/llmtune", content=body, headers=w3_headers(body))
    assert response.status_code == 200, response.text
    return response.json()["eventId"], body


def shown_body(client: httpx.Client, event_id: str) -> str:
    response = client.get(f"/admin/events/{event_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    detail = response.json()
    header_names = [header["name"] for header in detail["headers"]]
    assert "x-webhook-signature" in header_names
    text: str = detail["rawBody"]
    return text


def test_sealed_at_rest_readable_through_the_api_and_rotated_while_serving(
    empty_db_url: str, tmp_path: Path
) -> None:
    env = receiver_env(empty_db_url)
    old_id, new_id = parse_key(OLD).id, parse_key(NEW).id
    bodies: dict[str, bytes] = {}

    with (
        running_server(tmp_path, env | {"ENCRYPTION_KEYS": OLD}) as server,
        httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as client,
    ):
        for n in range(5):
            event_id, body = post(client, f"job-{n}")
            bodies[event_id] = body
        for event_id, body in bodies.items():
            assert shown_body(client, event_id) == body.decode()

    dumped = dump_events(empty_db_url)
    assert b"training.started" in dumped  # the clear columns are there: the rows were dumped
    assert old_id.encode() in dumped
    assert MARKER.encode() not in dumped
    assert b"private-bucket" not in dumped
    assert b"x-webhook-signature" not in dumped.lower()

    rotating = env | {"ENCRYPTION_KEYS": f"{NEW},{OLD}"}
    with (
        running_server(tmp_path, rotating) as server,
        httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as client,
    ):
        stop = threading.Event()
        during: dict[str, bytes] = {}

        def keep_posting() -> None:
            n = 0
            while not stop.is_set() and n < 200:
                event_id, body = post(client, f"job-during-{n}")
                during[event_id] = body
                n += 1

        poster = threading.Thread(target=keep_posting)
        poster.start()
        try:
            rotated = run_cli(["rotate-keys", "--batch-size", "2"], cwd=tmp_path, env=rotating)
        finally:
            stop.set()
            poster.join(timeout=30)
        assert rotated.returncode == 0, rotated.stderr
        assert re.search(
            rf"rotate-keys: \d+ rows now under key {new_id}; keys no longer needed: {old_id} "
            r"in \d+\.\d s",
            rotated.stderr,
        ), rotated.stderr
        assert during, "no webhook was stored while rotating"
        bodies |= during

    refused = {
        "old key only": (OLD, f"stored data is sealed under key {new_id}, which is not among"),
        "no key": ("", f"ENCRYPTION_KEYS is not set, but stored data is sealed under key {new_id}"),
    }
    for keys, message in refused.values():
        port = str(free_port())
        result = run_cli(
            ["serve", "--port", port, "--no-init-env"],
            cwd=tmp_path,
            env=env | {"ENCRYPTION_KEYS": keys},
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("llmtune-receiver: ")
        assert message in lines[-1]
        assert "Traceback" not in result.stderr

    with (
        running_server(tmp_path, env | {"ENCRYPTION_KEYS": NEW}) as server,
        httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as client,
    ):
        for event_id, body in bodies.items():
            assert shown_body(client, event_id) == body.decode()

    dumped = dump_events(empty_db_url)
    assert MARKER.encode() not in dumped
    assert old_id.encode() not in dumped
    assert orjson.loads(next(iter(bodies.values())))["data"]["dataset"] == MARKER
