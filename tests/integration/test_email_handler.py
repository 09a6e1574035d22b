"""The email handler against a real SMTP server (`tests/smtp_sink.py`): what arrives, and how the
server's answers and failures become `Ok`, `Retry` or `Fail`. No mocks."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.clock import SystemClock
from service.handlers.base import Delivery, Fail, HandlerDeps, Ok, Retry
from service.handlers.email import EmailHandler
from tests.deliveries import a_delivery
from tests.smtp_sink import SmtpSink, smtp_sink

SENDER = "LLMTune <alerts@receiver.example>"
RECIPIENTS = ["ops@example.com", "Ml Team <ml@example.com>"]
PASSWORD = "correct-horse-battery"


def delivery(delivery_id: str = "dlv-1", attempt: int = 1, **fields: Any) -> Delivery:
    """A `training.failed` delivery with non-ASCII text; `fields` override the event's."""
    values: dict[str, Any] = {
        "type": "training.failed",
        "dedup_key": "sem:training.failed:job-é1",
        "external_id": None,
        "job_id": "job-é1",
        "metrics": {"loss": 2.5},
        "error": "échec ✗",
        "occurred_at": datetime(2025, 11, 8, 14, 20, tzinfo=UTC),
    }
    return a_delivery(
        id=delivery_id,
        attempt=attempt,
        route="ops-mail",
        event_id="evt-1",
        received_at=datetime(2025, 11, 8, 14, 22, 31, tzinfo=UTC),
        **(values | fields),
    )


@pytest.fixture
async def deps() -> AsyncIterator[HandlerDeps]:
    """What the service hands every handler; the HTTP client is closed afterwards."""
    async with httpx.AsyncClient() as http:
        yield HandlerDeps(http=http, clock=SystemClock(), public_url="https://receiver.example")


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    """A plain SMTP server without AUTH or STARTTLS."""
    async with smtp_sink() as server:
        yield server


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate, which clients do not trust."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder: Path = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    request = ("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=x")
    subprocess.run(
        ["openssl", *request, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def handler(deps: HandlerDeps, port: int, host: str = "127.0.0.1", **options: Any) -> EmailHandler:
    """An email handler for `host:port` built from route options, as the service builds it."""
    base = {"host": host, "port": port, "from": SENDER, "to": RECIPIENTS, "timeout": 5}
    return EmailHandler.from_options(base | options, deps)


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (just released by the OS)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_delivers_to_the_envelope_recipients(deps: HandlerDeps, sink: SmtpSink) -> None:
    """The server gets the bare envelope addresses and a message that parses with every field."""
    outcome = await handler(deps, sink.port).handle(delivery())
    assert isinstance(outcome, Ok)
    assert outcome.summary is not None
    assert "queued as 1" in outcome.summary
    [mail] = sink.received
    assert mail.mail_from == "alerts@receiver.example"
    assert mail.rcpt_tos == ("ops@example.com", "ml@example.com")
    assert mail.user is None
    message = mail.parsed()
    assert message["Subject"] == "training.failed: job job-é1 (meta-llama/Llama-3.3-70B-Instruct)"
    assert message["From"] == SENDER
    assert message["Message-ID"] == "<dlv-1@llmtune-receiver>"
    assert message["X-LLMTune-Event-Id"] == "evt-1"
    plain = message.get_body(("plain",))
    assert plain is not None
    assert "Error: échec ✗" in plain.get_content().splitlines()


async def test_retries_carry_the_same_message_id(deps: HandlerDeps, sink: SmtpSink) -> None:
    """Two attempts of one delivery arrive with one Message-ID, so mailers can fold them."""
    mailer = handler(deps, sink.port)
    await mailer.handle(delivery(attempt=1))
    await mailer.handle(delivery(attempt=2))
    ids = {mail.parsed()["Message-ID"] for mail in sink.received}
    assert ids == {"<dlv-1@llmtune-receiver>"}
    assert len(sink.received) == 2


async def test_451_on_data_is_retried(deps: HandlerDeps, sink: SmtpSink) -> None:
    """A 4xx answer to DATA is SMTP's "try later": `Retry`, and the next attempt gets through."""
    sink.reject_next_data(451, "4.3.0 Mailbox temporarily unavailable")
    mailer = handler(deps, sink.port)
    outcome = await mailer.handle(delivery())
    assert outcome == Retry("SMTP 451: 4.3.0 Mailbox temporarily unavailable")
    assert sink.received == []
    assert isinstance(await mailer.handle(delivery(attempt=2)), Ok)


async def test_550_on_data_fails(deps: HandlerDeps, sink: SmtpSink) -> None:
    """A 5xx answer to DATA is final: `Fail`."""
    sink.reject_next_data(550, "5.7.1 Message rejected as spam")
    outcome = await handler(deps, sink.port).handle(delivery())
    assert outcome == Fail("SMTP 550: 5.7.1 Message rejected as spam")


async def test_all_recipients_refused_fails(deps: HandlerDeps, sink: SmtpSink) -> None:
    """When the server refuses every recipient with 5xx, nothing can be delivered: `Fail`."""
    sink.refuse_recipient("ops@example.com", 550)
    sink.refuse_recipient("ml@example.com", 553)
    outcome = await handler(deps, sink.port).handle(delivery())
    assert isinstance(outcome, Fail)
    assert "ops@example.com: 550" in outcome.error
    assert sink.received == []


async def test_some_recipients_refused_is_ok(deps: HandlerDeps, sink: SmtpSink) -> None:
    """Mail accepted for some recipients is `Ok` (a retry would mail them twice), noting others."""
    sink.refuse_recipient("ml@example.com", 550)
    outcome = await handler(deps, sink.port).handle(delivery())
    assert isinstance(outcome, Ok)
    assert outcome.summary is not None
    assert "refused: ml@example.com (550)" in outcome.summary
    assert [mail.rcpt_tos for mail in sink.received] == [("ops@example.com",)]


async def test_auth_with_the_right_password(deps: HandlerDeps) -> None:
    """With the configured user and password the server authenticates the session."""
    async with smtp_sink(credentials=("mailer", PASSWORD)) as server:
        options = {"user": "mailer", "password": PASSWORD}
        outcome = await handler(deps, server.port, **options).handle(delivery())
    assert isinstance(outcome, Ok)
    assert [mail.user for mail in server.received] == ["mailer"]


async def test_auth_with_a_wrong_password_fails(deps: HandlerDeps) -> None:
    """Refused credentials are `Fail`, and the error does not show the password."""
    wrong = "wrong-horse-battery"
    async with smtp_sink(credentials=("mailer", PASSWORD)) as server:
        options = {"user": "mailer", "password": wrong}
        outcome = await handler(deps, server.port, **options).handle(delivery())
    assert isinstance(outcome, Fail)
    assert outcome.error.startswith("SMTP 535")
    assert wrong not in outcome.error
    assert server.received == []


async def test_password_echoed_by_the_server_is_masked(deps: HandlerDeps) -> None:
    """A server reply that quotes the password reaches the attempt record masked."""
    async with smtp_sink(credentials=("mailer", PASSWORD)) as server:
        server.reject_next_data(554, f"5.6.0 odd content near {PASSWORD}")
        options = {"user": "mailer", "password": PASSWORD}
        outcome = await handler(deps, server.port, **options).handle(delivery())
    assert outcome == Fail("SMTP 554: 5.6.0 odd content near ***")


async def test_missing_auth_fails(deps: HandlerDeps) -> None:
    """A server that requires AUTH refuses a handler configured without it: `Fail`."""
    async with smtp_sink(credentials=("mailer", PASSWORD)) as server:
        outcome = await handler(deps, server.port).handle(delivery())
    assert isinstance(outcome, Fail)
    assert outcome.error.startswith("SMTP 530")


async def test_closed_port_is_retried(deps: HandlerDeps) -> None:
    """Connection refused means the server is down for now: `Retry`."""
    outcome = await handler(deps, closed_port()).handle(delivery())
    assert isinstance(outcome, Retry)
    assert "SMTPConnectError" in outcome.error


async def test_silent_server_times_out_and_is_retried(deps: HandlerDeps) -> None:
    """A server that accepts the connection but never greets is a timeout: `Retry`."""
    connections: list[asyncio.StreamWriter] = []

    async def say_nothing(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        outcome = await handler(deps, port, timeout=0.2).handle(delivery())
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()
    assert isinstance(outcome, Retry)
    assert "Timeout" in outcome.error


async def test_required_starttls_not_offered_fails(deps: HandlerDeps, sink: SmtpSink) -> None:
    """`starttls = true` against a server without STARTTLS is `Fail`, and nothing is sent."""
    # Not Retry: the route demands encryption and this server does not offer it. That is a
    # configuration mismatch (wrong host or port, or the option), which retrying cannot fix,
    # and falling back to plain text would defeat the option.
    outcome = await handler(deps, sink.port, starttls=True).handle(delivery())
    assert isinstance(outcome, Fail)
    assert "STARTTLS" in outcome.error
    assert sink.received == []


async def test_implicit_tls_against_a_plain_server_fails(deps: HandlerDeps, sink: SmtpSink) -> None:
    """`tls = true` against a port that does not speak TLS is a configuration mismatch: `Fail`."""
    outcome = await handler(deps, sink.port, tls=True).handle(delivery())
    assert isinstance(outcome, Fail)
    assert "WRONG_VERSION_NUMBER" in outcome.error


async def test_offered_starttls_is_used_by_default(
    deps: HandlerDeps, server_tls: ssl.SSLContext
) -> None:
    """With neither option set the handler upgrades when STARTTLS is offered (here to a
    certificate it does not trust, which is `Fail`) instead of sending in plain text."""
    async with smtp_sink(tls_context=server_tls) as server:
        outcome = await handler(deps, server.port).handle(delivery())
    assert isinstance(outcome, Fail)
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.error
    assert server.received == []


async def test_starttls_false_never_upgrades(deps: HandlerDeps, server_tls: ssl.SSLContext) -> None:
    """`starttls = false` sends in plain text even when the server offers STARTTLS."""
    async with smtp_sink(tls_context=server_tls) as server:
        outcome = await handler(deps, server.port, starttls=False).handle(delivery())
    assert isinstance(outcome, Ok)
    assert len(server.received) == 1
