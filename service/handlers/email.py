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
import ssl
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.errors import MessageError
from email.headerregistry import Address
from email.utils import getaddresses, parseaddr
from typing import Annotated, Any, ClassVar

import aiosmtplib
from pydantic import AfterValidator, ConfigDict, Field, PlainValidator
from pydantic_core import PydanticCustomError

from service.clock import Clock
from service.handlers.base import (
    MAX_ERROR_TEXT,
    Delivery,
    Fail,
    HandlerDeps,
    Ok,
    Options,
    OptionsError,
    Outcome,
    Retry,
    validated,
)
from service.handlers.email_format import compose

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 300.0
# Handshake failures that mean "this port does not speak TLS": retrying cannot help.
_TLS_MISMATCH = frozenset({"WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL"})


# --- options ---------------------------------------------------------------------------------


def _option(message: str) -> PydanticCustomError:
    return PydanticCustomError("option", message)


def _address(value: object, item: str = "") -> Address:
    """One `local@domain` address, optionally with a display name (`Ops <ops@example.com>`).
    Problems are named, never quoted: the option's value stays out of every message."""
    if not isinstance(value, str) or not value.strip():
        raise _option(f"{item}must be an email address")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise _option(f"{item}must not contain control characters")
    if len(getaddresses([value])) != 1:
        raise _option(f"{item}must be one address")
    name, addr = parseaddr(value)
    try:
        address = Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError, MessageError):
        raise _option(f"{item}not a valid address") from None
    # parseaddr quietly drops spaces inside an address ("a@exa mple.com"); insist it is intact.
    if not (address.username and address.domain) or address.addr_spec not in value:
        raise _option(f"{item}not a valid address")
    return address


def _recipients(value: object) -> tuple[Address, ...]:
    if not isinstance(value, list | tuple):
        raise _option("must be a list of addresses")
    if not value:
        raise _option("must name at least one address")
    found = [_address(item, f"item {index}: ") for index, item in enumerate(value, 1)]
    unique: dict[str, Address] = {}
    for address in found:  # a repeated recipient gets one copy
        unique.setdefault(address.addr_spec.lower(), address)
    return tuple(unique.values())


def _host(host: str) -> str:
    if not host:
        raise _option("required, the SMTP server's name or address")
    if len(host) > 253 or any(c.isspace() or unicodedata.category(c) == "Cc" for c in host):
        raise _option("not a host name")
    return host


class EmailOptions(Options):
    """The `email` handler's options; `tls` against `starttls` and `user` with `password` are
    checked by `parse_options`."""

    model_config = Options.model_config | ConfigDict(arbitrary_types_allowed=True)
    must: ClassVar[Mapping[str, str]] = {
        "host": "must be the SMTP server's name or address",
        "host.missing": "required, the SMTP server's name or address",
        "port": "must be an integer from 1 to 65535",
        "from.missing": "required, an email address",
        "to.missing": "required, a list of addresses",
        "starttls": "must be true or false",
        "tls": "must be true or false",
        "user": "must be a non-empty string",
        "password": "must be a non-empty string",
        "timeout": "must be a number of seconds",
        "timeout.range": f"must be more than 0 and at most {MAX_TIMEOUT:g} seconds",
    }
    host: Annotated[str, AfterValidator(_host)]
    port: int | None = Field(None, ge=1, le=65535)  # None: 465 with `tls`, else 25
    sender: Annotated[Address, PlainValidator(_address)] = Field(alias="from")
    to: Annotated[tuple[Address, ...], PlainValidator(_recipients)]
    starttls: bool | None = None
    tls: bool = False
    user: str | None = Field(None, min_length=1)
    password: str | None = Field(None, min_length=1, repr=False)
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)


def parse_options(options: Mapping[str, Any]) -> EmailOptions:
    """`options` read by `EmailOptions`, and the options that go together checked; else
    `OptionsError("<option>: <what is wrong>")`, which never quotes a value."""
    found = validated(EmailOptions, options)
    if found.tls and found.starttls:
        raise OptionsError("starttls: cannot be true with tls = true (implicit TLS)")
    if found.user is not None and found.password is None:
        raise OptionsError("password: required when user is set")
    if found.password is not None and found.user is None:
        raise OptionsError("user: required when password is set")
    return found


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
        found = parse_options(options)
        return cls(
            host=found.host,
            port=found.port or (465 if found.tls else 25),
            sender=found.sender,
            recipients=found.to,
            # None: plain SMTP, upgraded only if the server offers STARTTLS (see module doc).
            start_tls=False if found.tls else found.starttls,
            use_tls=found.tls,
            user=found.user,
            password=found.password,
            timeout=found.timeout,
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
