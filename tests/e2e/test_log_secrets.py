"""A real `serve` process configured with a marker secret in every place a credential goes
(admin token, webhook secret, LLMTune API key, encryption key, routes' options, the database
URL's password on PostgreSQL) writes none of them to its log: not on an unexpected 500 (its
traceback has no frame locals), not when the Slack handler posts (httpx's request line), and a
job callback URL's token never appears in the request log either."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.failing_app import FAIL_PATH, LOCAL_SECRET
from tests.e2e.server import WEBHOOK_PATH, running_server, service_env
from tests.helpers import hex_signature, w3_body
from tests.sinks import HttpSink, Received, http_sink
from tests.smtp_sink import SmtpSink, smtp_sink
from tests.waiting import until

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "admin-token-marker-4c1f0e9a7b"
WEBHOOK_SECRET = "webhook-secret-marker-93d2a"
LLMTUNE_API_KEY = "llmtune-api-key-marker-51be"
ENCRYPTION_KEY = base64.b64encode(b"encryption-key-marker-32-bytes!!").decode()
FORWARD_SECRET = "whsec_" + base64.b64encode(b"forward-secret-marker-32-bytes!!").decode()
SLACK_PATH = "/services/T0SLACKMARKER/B0SLACKMARKER/slackpathmarker7d"
SMTP_PASSWORD = "smtp-password-marker-0a8c"
DB_PASSWORD = "dbpasswordmarker6e"
CALLBACK_TOKEN = "callbacktokenmarker" + "7" * 13


def routes_toml(http: HttpSink, smtp: SmtpSink) -> str:
    return f"""
[[routes]]
name = "slack"
events = ["training.*"]
handler = "slack"
options = {{ webhook_url = "{http.url}{SLACK_PATH}" }}

[[routes]]
name = "forward"
events = ["training.*"]
handler = "http"
options = {{ url = "{http.url}/forward?key=forwardquerymarker", secret = "{FORWARD_SECRET}", \
allow_private = true }}

[[routes]]
name = "email"
events = ["training.*"]
handler = "email"
options = {{ host = "127.0.0.1", port = {smtp.port}, from = "receiver@example.test", \
to = ["ops@example.test"], user = "mailer", password = "{SMTP_PASSWORD}" }}
"""


def with_password(db_url: str) -> str:
    """`db_url` with the marker password on PostgreSQL (trust auth ignores it); SQLite as is."""
    url = make_url(db_url)
    if url.get_backend_name() != "postgresql":
        return db_url
    return url.set(password=DB_PASSWORD).render_as_string(hide_password=False)


def on_path(sink: HttpSink, prefix: str) -> list[Received]:
    return [r for r in sink.received if r.path.startswith(prefix)]


async def delivered(admin: httpx.AsyncClient, count: int) -> None:
    """Wait until `count` deliveries have succeeded (their log lines are written by then)."""

    async def enough() -> bool:
        page = (await admin.get("/admin/deliveries?status=succeeded")).json()
        return len(page["items"]) >= count

    await until(enough, 20, f"{count} deliveries succeed")


async def test_no_secret_reaches_the_log(engine: AsyncEngine, db_url: str, tmp_path: Path) -> None:
    """A 500 with a secret local, a Slack post, a forward, an email and a callback request:
    the server's stdout and stderr hold none of the configured secrets, nor the token."""
    async with http_sink() as http, smtp_sink(credentials=("mailer", SMTP_PASSWORD)) as smtp:
        (tmp_path / "routes.toml").write_text(routes_toml(http, smtp))
        env = service_env(
            DATABASE_URL=with_password(db_url),
            WEBHOOK_SECRETS=WEBHOOK_SECRET,
            ADMIN_TOKENS=ADMIN_TOKEN,
            LLMTUNE_API_KEY=LLMTUNE_API_KEY,
            LLMTUNE_API_URL=f"{http.url}/llmtune/v1",
            ENCRYPTION_KEYS=ENCRYPTION_KEY,
            ROUTES_FILE=str(tmp_path / "routes.toml"),
            WORKER_POLL_SECONDS="0.05",
        )
        entry = ("tests.e2e.failing_app",)
        with running_server(tmp_path, env, "--no-init-env", entry=entry) as server:
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with httpx.AsyncClient(
                base_url=server.base_url, headers=auth, trust_env=False
            ) as client:
                failed = await client.get(FAIL_PATH)
                assert failed.status_code == 500
                assert failed.json()["error"]["code"] == "INTERNAL_ERROR"

                body = w3_body(job_id="job-log-secrets")
                signature = {"X-Webhook-Signature": hex_signature(body, WEBHOOK_SECRET)}
                stored = await client.post(WEBHOOK_PATH, content=body, headers=signature)
                assert stored.status_code == 200, stored.text

                callback = await client.post(f"{WEBHOOK_PATH}/jobs/{CALLBACK_TOKEN}", content=b"{}")
                assert callback.status_code == 404

                await until(lambda: bool(on_path(http, "/services/") and on_path(http, "/forward")))
                await until(lambda: len(smtp.received) >= 1)
                await delivered(client, 3)
        log = server.log_text() + (tmp_path / "server.stdout.log").read_text(errors="replace")

    markers = {
        "admin token": ADMIN_TOKEN,
        "webhook secret": WEBHOOK_SECRET,
        "LLMTune API key": LLMTUNE_API_KEY,
        "encryption key": ENCRYPTION_KEY,
        "forward secret": FORWARD_SECRET,
        "forward URL query": "forwardquerymarker",
        "Slack webhook URL": "SLACKMARKER",
        "SMTP password": SMTP_PASSWORD,
        "database password": DB_PASSWORD,
        "secret local variable": LOCAL_SECRET,
        "callback token": CALLBACK_TOKEN,
    }
    leaked = sorted(name for name, marker in markers.items() if marker in log)
    assert leaked == [], f"the log shows {leaked}:\n{log}"

    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    [unhandled] = [line for line in lines if line.get("event") == "unhandled_error"]
    assert "RuntimeError" in json.dumps(unhandled["exception"])
    requests = [line for line in lines if line.get("event") == "request"]
    assert {"path": "/webhooks/llmtune/jobs/{token}", "status": 404}.items() <= next(
        line for line in requests if line["path"].startswith(f"{WEBHOOK_PATH}/jobs/")
    ).items()
