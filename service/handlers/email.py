"""The `email` handler: one notification mail per delivery, sent over SMTP with aiosmtplib.

`compose` (in `service.handlers.email_format`) is pure and builds the whole message (tests parse it
back); `outcome_for_error` is pure and reads aiosmtplib's exceptions as `Retry` (the server may
accept later) or `Fail` (it will not, or our configuration does not suit it). The handler does only
the sending. Error texts never carry the SMTP password. TLS: neither `starttls` nor `tls` set means
plain SMTP upgraded by STARTTLS when the server offers it (aiosmtplib's `start_tls=None`);
`starttls = true` demands STARTTLS; `starttls = false` never upgrades; `tls = true` is implicit TLS
from the first byte.
"""

from __future__ import annotations

import base64
import math
import ssl
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.errors import MessageError
from email.headerregistry import Address
from email.utils import getaddresses, parseaddr
from typing import Any, ClassVar

import aiosmtplib

from service.clock import Clock
from service.handlers.base import (
    MAX_ERROR_TEXT,
    Delivery,
    Fail,
    HandlerDeps,
    Ok,
    OptionsError,
    Outcome,
    Retry,
)
from service.handlers.email_format import compose

_KNOWN_OPTIONS = frozenset(
    {"host", "port", "from", "to", "starttls", "tls", "user", "password", "timeout"}
)
# Handshake failures that mean "this port does not speak TLS": retrying cannot help.
_TLS_MISMATCH = frozenset({"WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL"})


# --- options ---------------------------------------------------------------------------------


def _address(option: str, value: object) -> Address:
    """One `local@domain` address, optionally with a display name (`Ops <ops@example.com>`)."""
    if not isinstance(value, str) or not value.strip():
        raise OptionsError(f"{option}: must be an email address")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise OptionsError(f"{option}: must not contain control characters")
    if len(getaddresses([value])) != 1:
        raise OptionsError(f"{option}: must be one address, got {value!r}")
    name, addr = parseaddr(value)
    try:
        address = Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError, MessageError):
        raise OptionsError(f"{option}: not a valid address: {value!r}") from None
    # parseaddr quietly drops spaces inside an address ("a@exa mple.com"); insist it is intact.
    if not (address.username and address.domain) or address.addr_spec not in value:
        raise OptionsError(f"{option}: not a valid address: {value!r}")
    return address


def _recipients(value: object) -> tuple[Address, ...]:
    if not isinstance(value, list | tuple):
        raise OptionsError("to: must be a list of addresses")
    if not value:
        raise OptionsError("to: must name at least one address")
    found = [_address(f"to: item {index}", item) for index, item in enumerate(value, 1)]
    unique: dict[str, Address] = {}
    for address in found:  # a repeated recipient gets one copy
        unique.setdefault(address.addr_spec.lower(), address)
    return tuple(unique.values())


def _flag(options: Mapping[str, Any], name: str) -> bool | None:
    value = options.get(name)
    if value is not None and not isinstance(value, bool):
        raise OptionsError(f"{name}: must be true or false")
    return value


def _text(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise OptionsError(f"{name}: must be a non-empty string")
    return value


def _host(options: Mapping[str, Any]) -> str:
    host = options.get("host")
    if not isinstance(host, str) or not host:
        raise OptionsError("host: required, the SMTP server's name or address")
    if len(host) > 253 or any(c.isspace() or unicodedata.category(c) == "Cc" for c in host):
        raise OptionsError(f"host: not a host name: {host!r}")
    return host


def _port(options: Mapping[str, Any], *, tls: bool) -> int:
    port = options.get("port", 465 if tls else 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise OptionsError(f"port: must be an integer from 1 to 65535, got {port!r}")
    return port


def _timeout(options: Mapping[str, Any]) -> float:
    value = options.get("timeout", 10)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionsError("timeout: must be a number of seconds")
    if not (math.isfinite(value) and 0 < value <= 300):
        raise OptionsError(f"timeout: must be more than 0 and at most 300 seconds, got {value}")
    return float(value)


# --- outcomes --------------------------------------------------------------------------------


def _tls_mismatch(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind `exc` that retrying cannot fix: an untrusted certificate, or a port
    that does not speak TLS. aiosmtplib wraps connect-time failures, so look at the cause too."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, ssl.SSLCertVerificationError) or (
            isinstance(candidate, ssl.SSLError)
            and getattr(candidate, "reason", None) in _TLS_MISMATCH
        ):
            return candidate
    return None


def _refused(exc: aiosmtplib.SMTPRecipientsRefused) -> Retry | Fail:
    detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
    text = f"all recipients refused: {detail}"
    if any(400 <= r.code < 500 for r in exc.recipients):
        return Retry(text)
    return Fail(text)


def _reply(exc: aiosmtplib.SMTPResponseException) -> Retry | Fail:
    text = f"SMTP {exc.code}: {exc.message}"
    if 400 <= exc.code < 500:
        return Retry(text)  # 4xx is SMTP's own "try again later", for AUTH too (RFC 4954 454)
    if exc.code >= 500 or isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return Fail(text)
    return Retry(text)  # a reply out of sequence: the conversation broke, not the request


def outcome_for_error(exc: Exception) -> Retry | Fail | None:
    """How an SMTP failure reads: 4xx, lost connections and timeouts are `Retry`; 5xx, refused
    credentials, TLS mismatches and a server lacking what we need are `Fail`; None when `exc` is
    no SMTP or network failure (a bug, which the caller should let escape)."""
    mismatch = _tls_mismatch(exc)
    if mismatch is not None:
        return Fail(f"TLS: {getattr(mismatch, 'reason', None) or mismatch}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _reply(exc)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return _refused(exc)
    if isinstance(exc, OSError | TimeoutError):  # SMTPServerDisconnected, SMTPConnectError, …
        return Retry(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPException):
        # No STARTTLS though required, no AUTH though configured, no SMTPUTF8 for an address.
        return Fail(f"{type(exc).__name__}: {exc}")
    return None


def _redacted(outcome: Retry | Fail, secrets: Sequence[str]) -> Retry | Fail:
    """`outcome` with each secret masked and its text clipped for the attempt record."""
    text = outcome.error
    for secret in secrets:
        text = text.replace(secret, "***")
    text = text[:MAX_ERROR_TEXT]
    return Retry(text, outcome.after) if isinstance(outcome, Retry) else Fail(text)


# --- the handler -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmailHandler:
    """Mails each delivery to a fixed list of recipients through one SMTP server."""

    name: ClassVar[str] = "email"

    host: str
    port: int
    sender: Address
    recipients: tuple[Address, ...]
    start_tls: bool | None
    use_tls: bool
    user: str | None
    password: str | None = field(repr=False)
    timeout: float
    public_url: str
    clock: Clock = field(repr=False)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], deps: HandlerDeps) -> EmailHandler:
        """Validate a route's options (`OptionsError` names the option) and build the handler."""
        unknown = sorted(str(name) for name in options if name not in _KNOWN_OPTIONS)
        if unknown:
            raise OptionsError(f"{unknown[0]}: unknown option; known: {sorted(_KNOWN_OPTIONS)}")
        tls, starttls = _flag(options, "tls") or False, _flag(options, "starttls")
        if tls and starttls:
            raise OptionsError("starttls: cannot be true with tls = true (implicit TLS)")
        user, password = _text(options, "user"), _text(options, "password")
        if user is not None and password is None:
            raise OptionsError("password: required when user is set")
        if password is not None and user is None:
            raise OptionsError("user: required when password is set")
        return cls(
            host=_host(options),
            port=_port(options, tls=tls),
            sender=_address("from", options.get("from")),
            recipients=_recipients(options.get("to")),
            # None: plain SMTP, upgraded only if the server offers STARTTLS (see module doc).
            start_tls=False if tls else starttls,
            use_tls=tls,
            user=user,
            password=password,
            timeout=_timeout(options),
            public_url=deps.public_url,
            clock=deps.clock,
        )

    async def handle(self, delivery: Delivery) -> Outcome:
        """Send the delivery's mail; the server's acceptance is `Ok`, its refusals are read by
        `outcome_for_error`."""
        message = compose(
            delivery,
            sender=str(self.sender),
            recipients=[str(address) for address in self.recipients],
            public_url=self.public_url,
            date=self.clock.now(),
        )
        try:
            refused, reply = await aiosmtplib.send(
                message,
                sender=self.sender.addr_spec,
                recipients=[address.addr_spec for address in self.recipients],
                hostname=self.host,
                port=self.port,
                username=self.user,
                password=self.password,
                timeout=self.timeout,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
            )
        except Exception as exc:
            outcome = outcome_for_error(exc)
            if outcome is None:
                raise
            return _redacted(outcome, self._secrets())
        summary = f"accepted by {self.host}:{self.port}: {reply}"
        if refused:  # some accepted: a retry would mail them twice, so note the rest and move on
            summary += "; refused: " + ", ".join(f"{a} ({r.code})" for a, r in refused.items())
        return Ok(summary[:MAX_ERROR_TEXT])

    def _secrets(self) -> list[str]:
        """The password as sent on the wire too (AUTH LOGIN sends it base64-encoded alone)."""
        if not self.password:
            return []
        return [self.password, base64.b64encode(self.password.encode()).decode()]
