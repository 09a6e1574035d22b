"""A real SMTP server for tests: aiosmtpd on a free port of 127.0.0.1 that records every message
and can be told to refuse the next DATA or a recipient, to require AUTH, or to offer STARTTLS.

aiosmtpd's `Controller` runs the server in its own thread and event loop; starting and stopping it
block, so `smtp_sink()` does both in a worker thread and the test's loop keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message the sink accepted: the envelope and the bytes as sent."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    user: str | None  # the AUTH login of the session, None when it did not authenticate

    def parsed(self) -> EmailMessage:
        """The message parsed with the modern policy."""
        message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


class SmtpSink:
    """The aiosmtpd handler: records mail, answers DATA as scripted, checks credentials."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.received: list[ReceivedMail] = []
        self.credentials = credentials
        self.host = "127.0.0.1"
        self.port = 0
        self._data_replies: list[str] = []
        self._refused: dict[str, str] = {}
        self._lock = threading.Lock()  # hooks run in the server's thread

    def reject_next_data(self, code: int, text: str = "refused by the test sink") -> None:
        """Answer the next DATA with `code` (e.g. 451, 550) instead of accepting it."""
        with self._lock:
            self._data_replies.append(f"{code} {text}")

    def refuse_recipient(self, address: str, code: int, text: str = "no such user here") -> None:
        """Answer RCPT TO for `address` with `code` (e.g. 450, 550) from now on."""
        with self._lock:
            self._refused[address] = f"{code} {text}"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Refuse senders of unauthenticated sessions when credentials are required."""
        if self.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept the recipient unless told to refuse it."""
        with self._lock:
            refusal = self._refused.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Record the message, or give the scripted refusal."""
        with self._lock:
            if self._data_replies:
                return self._data_replies.pop(0)
            auth = session.auth_data
            login = auth.login if isinstance(auth, LoginPassword) else None
            self.received.append(
                ReceivedMail(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=envelope.original_content or b"",
                    user=login.decode() if login is not None else None,
                )
            )
            return f"250 OK queued as {len(self.received)}"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """aiosmtpd's `authenticator`: accept exactly the configured login and password."""
        expected = self.credentials
        ok = (
            expected is not None
            and isinstance(data, LoginPassword)
            and (data.login, data.password) == (expected[0].encode(), expected[1].encode())
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


class _Controller(Controller):
    """A `Controller` that may listen on port 0: it reads the bound port before poking the
    server (aiosmtpd's own poke connects to `self.port`, which would still be 0)."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        hostname: str = self.hostname
        with socket.create_connection((hostname, self.port), 1.0) as sock:
            sock.recv(1024)


@contextlib.asynccontextmanager
async def smtp_sink(
    credentials: tuple[str, str] | None = None, tls_context: ssl.SSLContext | None = None
) -> AsyncIterator[SmtpSink]:
    """An `SmtpSink` listening on 127.0.0.1 for the duration; `credentials` make it offer and
    require AUTH (over plain text, as only tests should), `tls_context` makes it offer STARTTLS."""
    sink = SmtpSink(credentials)
    auth: dict[str, Any] = {}
    if credentials is not None:
        auth = {"authenticator": sink.authenticate, "auth_require_tls": False}
    # Not `auth_required=True`: aiosmtpd warns about it without TLS (and warnings are errors
    # here); refusing MAIL before AUTH in `handle_MAIL` requires it just as well.
    controller = _Controller(
        sink,
        hostname=sink.host,
        port=0,
        server_hostname="smtp-sink.test",  # else socket.getfqdn(), slow where DNS is unreachable
        tls_context=tls_context,
        **auth,
    )
    await asyncio.to_thread(controller.start)
    sink.port = controller.port
    try:
        yield sink
    finally:
        await asyncio.to_thread(controller.stop)
