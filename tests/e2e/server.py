"""Real receiver processes for the end-to-end tests: start, wait until ready, stop; run the CLI.

Everything listens on and talks to 127.0.0.1 only. Each process gets an environment built from
`os.environ` minus the service's own settings (and proxies), plus exactly what the test sets.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import ADMIN_TOKEN, SECRET

HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
CLI_TIMEOUT_SECONDS = 30.0
WEBHOOK_PATH = "/webhooks/llmtune"

# Settings a developer's shell might carry; the tests decide each of them explicitly.
SETTINGS_VARIABLES = frozenset(
    {
        "DATABASE_URL",
        "WEBHOOK_SECRETS",
        "WEBHOOK_ALLOW_UNSIGNED",
        "ADMIN_TOKENS",
        "ENCRYPTION_KEYS",
        "MAX_BODY_BYTES",
        "MAX_HEADER_BYTES",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "BODY_TIMEOUT_SECONDS",
        "FORWARDED_ALLOW_IPS",
        "PUBLIC_URL",
        "ROUTES_FILE",
        "RUN_WORKER",
        "INGEST_QUEUE_LIMIT",
        "INGEST_BATCH_LIMIT",
        "LLMTUNE_API_URL",
        "LLMTUNE_API_KEY",
        "JOB_POLL_AFTER",
        "JOB_CALLBACKS_UNSIGNED",
        "DEDUP_RETENTION_DAYS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "WORKER_CONCURRENCY",
        "WORKER_LEASE_SECONDS",
        "WORKER_POLL_SECONDS",
        "HOST",
        "PORT",
        "CUSTOM_EVENT_TYPES",
        "LLMTUNE_RECEIVER_URL",
    }
)
# A proxy would take the CLI's requests to 127.0.0.1 elsewhere.
PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy"})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(**values: str) -> dict[str, str]:
    """`os.environ` without the service's settings or proxies, JSON logs, then `values`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name.upper() not in SETTINGS_VARIABLES and name.lower() not in PROXY_VARIABLES
    }
    return env | {"LOG_FORMAT": "json", "LOG_LEVEL": "info"} | values


def receiver_env(db_url: str) -> dict[str, str]:
    """The environment of a configured receiver on `db_url` with the test secret and token."""
    return service_env(DATABASE_URL=db_url, WEBHOOK_SECRETS=SECRET, ADMIN_TOKENS=ADMIN_TOKEN)


def run_cli(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run `python -m service ARGS` to completion and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


@dataclass(frozen=True, slots=True)
class Server:
    """A running `serve` process and where its stderr goes."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{HOST}:{self.port}"

    @property
    def webhook_url(self) -> str:
        """The full URL of the webhook endpoint."""
        return self.base_url + WEBHOOK_PATH

    def log_text(self) -> str:
        """Everything the server has written to stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s) and reap it; idempotent."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


def wait_until_ready(server: Server, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    """Poll `GET /readyz` until 200; fail with the server's stderr if it exits or times out."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(base_url=server.base_url, timeout=1.0, trust_env=False) as client:
        while True:
            code = server.process.poll()
            if code is not None:
                pytest.fail(
                    f"the server exited with {code} before it was ready; stderr:\n"
                    f"{server.log_text()}",
                    pytrace=False,
                )
            try:
                response = client.get("/readyz")
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the server was not ready within {timeout:.0f} s (last: {last}); stderr:\n"
                    f"{server.log_text()}",
                    pytrace=False,
                )
            time.sleep(0.05)


@contextmanager
def running_server(
    cwd: Path,
    env: Mapping[str, str],
    *args: str,
    logs: Path | None = None,
    port: int | None = None,
    entry: Sequence[str] = ("service", "serve"),
) -> Iterator[Server]:
    """`python -m service serve ARGS` on `port` (default: a free one) of 127.0.0.1, ready;
    stopped on exit. stderr goes to `server.stderr.log` in `logs` (default: `cwd`), stdout
    next to it. `entry` replaces `service serve` (a test module that serves its own app).
    """
    port = free_port() if port is None else port
    log_dir = cwd if logs is None else logs
    log_path = log_dir / "server.stderr.log"
    command = [sys.executable, "-m", *entry, "--host", HOST, "--port", str(port)]
    env = dict(env)
    if entry[0] != "service":
        # A test module as entry point: the child must find `tests` as the runner does.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    with log_path.open("wb") as stderr, (log_dir / "server.stdout.log").open("wb") as stdout:
        process = subprocess.Popen(
            [*command, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    server = Server(process=process, port=port, log_path=log_path)
    try:
        wait_until_ready(server)
        yield server
    finally:
        server.stop()
