"""The email handler's pure parts: the composed message (parsed back as a mail client would),
option validation, and how SMTP failures read as `Retry` or `Fail`."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPConnectResponseError,
    SMTPConnectTimeoutError,
    SMTPException,
    SMTPNotSupported,
    SMTPReadTimeoutError,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)
from hypothesis import given
from hypothesis import strategies as st

from service.clock import SystemClock
from service.events import KNOWN_EVENTS
from service.handlers.base import Delivery, Fail, HandlerDeps, OptionsError, Retry
from service.handlers.email import EmailHandler, outcome_for_error
from service.handlers.email_format import compose, subject
from tests.deliveries import a_delivery

RECEIVED = datetime(2025, 11, 8, 14, 22, 31, tzinfo=UTC)
PUBLIC_URL = "https://receiver.example"
SENDER = "LLMTune <alerts@receiver.example>"
RECIPIENTS = ["ops@example.com", "ml@example.com"]
NASTY = "<script>alert('x')</script> & co"


def delivery(
    delivery_id: str = "dlv-1", attempt: int = 1, event_id: str = "evt-1", **fields: Any
) -> Delivery:
    """A delivery of a `training.completed` event, with `fields` overriding the event's."""
    values: dict[str, Any] = {
        "dedup_key": "id:evt-ext-1",
        "external_id": "evt-ext-1",
        "job_id": "job-123",
        "occurred_at": None,
    }
    return a_delivery(
        id=delivery_id,
        attempt=attempt,
        route="ops-mail",
        event_id=event_id,
        received_at=RECEIVED,
        **(values | fields),
    )


def parsed(item: Delivery, public_url: str = PUBLIC_URL) -> EmailMessage:
    """`compose` for `item`, serialized and parsed back as a receiving mail client would."""
    message = compose(item, sender=SENDER, recipients=RECIPIENTS, public_url=public_url)
    result = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(result, EmailMessage)
    return result


def bodies(message: EmailMessage) -> tuple[str, str]:
    """The text/plain and text/html contents, decoded."""
    plain, rich = (part for part in message.iter_parts() if isinstance(part, EmailMessage))
    assert plain.get_content_type() == "text/plain"
    assert rich.get_content_type() == "text/html"
    return plain.get_content(), rich.get_content()


FULL = delivery(
    job_id="job-123",
    artifact="s3://bucket/job-123/adapter.safetensors",
    deployment_id="dep-9",
    metrics={"loss": 0.125, "steps": 1200, "eval": {"bleu": 31.5}},
    error="OOM at step 1200\nretrying disabled",
    occurred_at=datetime(2025, 11, 8, 14, 20, tzinfo=UTC),
    is_test=True,
)


class TestCompose:
    @pytest.mark.parametrize(
        "item", [pytest.param(FULL, id="full"), pytest.param(delivery(), id="minimal")]
    )
    def test_is_multipart_alternative_with_text_and_html(self, item: Delivery) -> None:
        """The message is multipart/alternative with exactly a text/plain and a text/html part."""
        message = parsed(item)
        assert message.get_content_type() == "multipart/alternative"
        types = [part.get_content_type() for part in message.iter_parts()]
        assert types == ["text/plain", "text/html"]

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            pytest.param({}, "training.completed: job job-123 (meta-llama/Llama-3.3-70B-Instruct)"),
            pytest.param(
                {"type": "deployment.created", "job_id": None, "deployment_id": "dep-9"},
                "deployment.created: deployment dep-9 (meta-llama/Llama-3.3-70B-Instruct)",
                id="deployment",
            ),
            pytest.param(
                {"type": "usage.threshold_reached", "job_id": None, "model": None},
                "usage.threshold_reached",
                id="type-only",
            ),
            pytest.param({"model": None}, "training.completed: job job-123", id="no-model"),
            pytest.param(
                {"is_test": True},
                "training.completed: job job-123 (meta-llama/Llama-3.3-70B-Instruct) [test]",
                id="test-event",
            ),
            pytest.param(
                {"job_id": "job\r\nBcc: x@evil", "model": None},
                "training.completed: job job Bcc: x@evil",
                id="crlf-flattened",
            ),
            pytest.param(
                {"job_id": "=?utf-8?q?fake?=", "model": None},
                "training.completed: job =?utf-8?q?fake?=",
                id="encoded-word-lookalike-kept-literal",
            ),
            pytest.param(
                {"job_id": "a\u2028b\x85c\x0bd\te", "model": None},
                "training.completed: job a b c d e",
                id="unicode-line-breaks-flattened",
            ),
        ],
    )
    def test_subject(self, fields: dict[str, Any], expected: str) -> None:
        """The subject names the event type first, then the job or deployment and the model."""
        assert parsed(delivery(**fields))["Subject"] == expected

    @pytest.mark.parametrize("event_type", sorted(KNOWN_EVENTS))
    def test_subject_starts_with_the_event_type_verbatim(self, event_type: str) -> None:
        """Every known event type leads the subject unchanged, so mail rules can match it."""
        assert parsed(delivery(type=event_type))["Subject"].startswith(f"{event_type}:")

    def test_long_subject_is_clipped(self) -> None:
        """A huge model name does not make a huge subject."""
        subject = parsed(delivery(model="m" * 5000))["Subject"]
        assert subject.startswith("training.completed: job job-123 (mmm")
        assert len(subject) <= 200
        assert subject.endswith("…")

    @pytest.mark.parametrize(
        "fields",
        [
            pytest.param({"job_id": NASTY}, id="job"),
            pytest.param({"model": NASTY}, id="model"),
            pytest.param({"artifact": NASTY}, id="artifact"),
            pytest.param({"deployment_id": NASTY}, id="deployment"),
            pytest.param({"error": NASTY}, id="error"),
            pytest.param({"metrics": {"note": NASTY}}, id="metric-value"),
            pytest.param({"metrics": {NASTY: 1}}, id="metric-name"),
        ],
    )
    def test_values_are_escaped_in_html_and_plain_in_text(self, fields: dict[str, Any]) -> None:
        """Markup in any value is inert in the HTML part and shown as typed in the text part."""
        plain, rich = bodies(parsed(delivery(**fields)))
        assert NASTY in plain
        assert "<script>" not in rich
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in rich

    def test_body_lists_every_field_and_the_link(self) -> None:
        """Both parts show type, job, model, artifact, deployment, metrics, error, times, link."""
        plain, rich = bodies(parsed(FULL))
        expected = [
            "training.completed",
            "job-123",
            "meta-llama/Llama-3.3-70B-Instruct",
            "s3://bucket/job-123/adapter.safetensors",
            "dep-9",
            "loss: 0.125",
            "steps: 1200",
            'eval: {"bleu": 31.5}',
            "OOM at step 1200",
            "retrying disabled",
            "2025-11-08T14:20:00.000000Z",
            "2025-11-08T14:22:31.000000Z",
            "https://receiver.example/admin/console/events/evt-1",
        ]
        for text in expected:
            assert text in plain
            assert text.replace('"', "&quot;") in rich
        assert '<a href="https://receiver.example/admin/console/events/evt-1">' in rich

    @pytest.mark.parametrize(
        "public_url",
        [pytest.param("https://receiver.example", id="bare"), pytest.param(PUBLIC_URL + "/")],
    )
    def test_link_has_one_slash(self, public_url: str) -> None:
        """A trailing slash on the public URL does not double up in the link."""
        plain, _ = bodies(parsed(delivery(), public_url))
        assert "Details: https://receiver.example/admin/console/events/evt-1" in plain.splitlines()

    def test_non_ascii_survives_the_round_trip(self) -> None:
        """Accents and symbols in the subject and bodies arrive intact."""
        item = delivery(job_id="job-é", model="modèle-✗", error="échec ✗")
        message = parsed(item)
        assert message["Subject"] == "training.completed: job job-é (modèle-✗)"
        for body in bodies(message):
            assert "échec ✗" in body
            assert "modèle-✗" in body

    def test_wire_form_is_ascii_headers(self) -> None:
        """Non-ASCII headers go out RFC 2047-encoded, as plain SMTP requires."""
        message = compose(
            delivery(job_id="job-é"), sender=SENDER, recipients=RECIPIENTS, public_url=PUBLIC_URL
        )
        head = message.as_bytes().split(b"\r\n\r\n", 1)[0]
        assert head.isascii()
        assert b"=?utf-8?" in head

    def test_message_id_is_stable_across_attempts(self) -> None:
        """Two attempts of one delivery carry the same Message-ID; another delivery does not."""
        first = parsed(delivery("dlv-1", attempt=1))["Message-ID"]
        second = parsed(delivery("dlv-1", attempt=2))["Message-ID"]
        other = parsed(delivery("dlv-2"))["Message-ID"]
        assert first == second == "<dlv-1@llmtune-receiver>"
        assert other != first

    def test_odd_delivery_ids_give_well_formed_message_ids(self) -> None:
        """An id with spaces or brackets is hashed into a plain token, still stable."""
        first = parsed(delivery("a <b>@c d"))["Message-ID"]
        assert first == parsed(delivery("a <b>@c d", attempt=3))["Message-ID"]
        token, domain = first.strip("<>").split("@")
        assert token.isalnum()
        assert domain == "llmtune-receiver"

    def test_headers(self) -> None:
        """From, To, Date, the event id header and Auto-Submitted are set."""
        message = parsed(FULL)
        assert message["From"] == SENDER
        assert message["To"] == "ops@example.com, ml@example.com"
        assert message["Date"].datetime == RECEIVED
        assert message["X-LLMTune-Event-Id"] == "evt-1"
        assert message["Auto-Submitted"] == "auto-generated"

    @pytest.mark.parametrize("evil", ["\r\n", "\n", "\r", "\u2028", "\x85", "\x00"])
    def test_no_header_injection(self, evil: str) -> None:
        """A line break in any value adds no header and leaves no newline in a header value."""
        payload = f"x{evil}Bcc: victim@evil.example"
        item = delivery(job_id=payload, model=payload, deployment_id=payload)
        message = parsed(item)
        assert message["Bcc"] is None
        expected = {
            "Subject",
            "From",
            "To",
            "Date",
            "Message-ID",
            "X-LLMTune-Event-Id",
            "Auto-Submitted",
            "MIME-Version",
            "Content-Type",
        }
        assert set(message.keys()) == expected
        for value in message.values():
            assert "\r" not in value
            assert "\n" not in value


ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=300)


@given(
    event_type=ANY_TEXT,
    job_id=st.none() | ANY_TEXT,
    model=st.none() | ANY_TEXT,
    error=st.none() | ANY_TEXT,
    event_id=ANY_TEXT,
    delivery_id=ANY_TEXT,
    metric=ANY_TEXT,
)
def test_compose_never_raises_and_parses_back(
    event_type: str,
    job_id: str | None,
    model: str | None,
    error: str | None,
    event_id: str,
    delivery_id: str,
    metric: str,
) -> None:
    """For arbitrary text (surrogates and controls included) the message builds, obeys SMTP's
    998-octet line limit, and parses back with two parts and single-line headers."""
    item = delivery(
        delivery_id,
        event_id=event_id,
        type=event_type,
        job_id=job_id,
        model=model,
        error=error,
        metrics={metric: metric},
    )
    raw = compose(item, sender=SENDER, recipients=RECIPIENTS, public_url=PUBLIC_URL).as_bytes()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    for value in message.values():
        assert "\n" not in value
        assert "\r" not in value
    assert message["Subject"] == subject(item)
    bodies(message)


# --- options -------------------------------------------------------------------------------


@pytest.fixture
async def deps() -> AsyncIterator[HandlerDeps]:
    """Dependencies for building handlers (the HTTP client is closed afterwards)."""
    async with httpx.AsyncClient() as http:
        yield HandlerDeps(http=http, clock=SystemClock(), public_url=PUBLIC_URL)


GOOD: dict[str, Any] = {
    "host": "smtp.example.com",
    "from": "alerts@receiver.example",
    "to": ["ops@example.com"],
}


class TestOptions:
    def test_defaults(self, deps: HandlerDeps) -> None:
        """Port 25, opportunistic STARTTLS, no TLS, no login, a 10 s timeout."""
        handler = EmailHandler.from_options(GOOD, deps)
        assert (handler.port, handler.start_tls, handler.use_tls) == (25, None, False)
        assert (handler.user, handler.password, handler.timeout) == (None, None, 10.0)

    @pytest.mark.parametrize(
        ("extra", "port", "start_tls", "use_tls"),
        [
            pytest.param({"tls": True}, 465, False, True, id="tls-465"),
            pytest.param({"starttls": True}, 25, True, False, id="starttls-not-587"),
            pytest.param({"starttls": False}, 25, False, False, id="starttls-off"),
            pytest.param({"starttls": True, "port": 587}, 587, True, False, id="submission"),
            pytest.param({"tls": True, "port": 2465}, 2465, False, True, id="tls-port"),
        ],
    )
    def test_tls_modes(
        self,
        deps: HandlerDeps,
        extra: dict[str, Any],
        port: int,
        start_tls: bool | None,
        use_tls: bool,
    ) -> None:
        """`tls` means implicit TLS on 465; `starttls` chooses required or no upgrade."""
        handler = EmailHandler.from_options(GOOD | extra, deps)
        assert (handler.port, handler.start_tls, handler.use_tls) == (port, start_tls, use_tls)

    def test_addresses_keep_display_names_and_drop_repeats(self, deps: HandlerDeps) -> None:
        """`Name <addr>` forms are accepted; a recipient listed twice is mailed once."""
        options = GOOD | {
            "from": "LLMTune <alerts@receiver.example>",
            "to": ["Ops <ops@example.com>", "OPS@example.com", "ml@example.com"],
        }
        handler = EmailHandler.from_options(options, deps)
        assert str(handler.sender) == "LLMTune <alerts@receiver.example>"
        assert [a.addr_spec for a in handler.recipients] == ["ops@example.com", "ml@example.com"]

    def test_password_is_not_in_the_repr(self, deps: HandlerDeps) -> None:
        """The handler's repr, which may end up in logs, leaves the password out."""
        handler = EmailHandler.from_options(GOOD | {"user": "u", "password": "hunter2"}, deps)
        assert "hunter2" not in repr(handler)

    @pytest.mark.parametrize(
        ("change", "option"),
        [
            pytest.param({"host": None}, "host", id="host-missing"),
            pytest.param({"host": ""}, "host", id="host-empty"),
            pytest.param({"host": "smtp.example.com\r\nX"}, "host", id="host-newline"),
            pytest.param({"host": 25}, "host", id="host-not-text"),
            pytest.param({"port": "25"}, "port", id="port-text"),
            pytest.param({"port": True}, "port", id="port-bool"),
            pytest.param({"port": 0}, "port", id="port-zero"),
            pytest.param({"port": 70000}, "port", id="port-too-big"),
            pytest.param({"from": None}, "from", id="from-missing"),
            pytest.param({"from": "alerts"}, "from", id="from-no-domain"),
            pytest.param({"from": "@example.com"}, "from", id="from-no-local"),
            pytest.param({"from": "a@b.com, c@d.com"}, "from", id="from-two"),
            pytest.param({"from": "a@exa mple.com"}, "from", id="from-space"),
            pytest.param({"from": "a@b.com\r\nBcc: x@y.z"}, "from", id="from-newline"),
            pytest.param({"from": ["a@b.com"]}, "from", id="from-list"),
            pytest.param({"to": None}, "to", id="to-missing"),
            pytest.param({"to": "ops@example.com"}, "to", id="to-string"),
            pytest.param({"to": []}, "to", id="to-empty"),
            pytest.param({"to": ["ops@example.com", "nope"]}, "to", id="to-bad-item"),
            pytest.param({"to": [3]}, "to", id="to-not-text"),
            pytest.param({"starttls": "yes"}, "starttls", id="starttls-text"),
            pytest.param({"tls": 1}, "tls", id="tls-int"),
            pytest.param({"tls": True, "starttls": True}, "starttls", id="tls-and-starttls"),
            pytest.param({"user": "u"}, "password", id="user-alone"),
            pytest.param({"password": "p"}, "user", id="password-alone"),
            pytest.param({"user": "", "password": "p"}, "user", id="user-empty"),
            pytest.param({"user": "u", "password": 123}, "password", id="password-not-text"),
            pytest.param({"timeout": 0}, "timeout", id="timeout-zero"),
            pytest.param({"timeout": -1.5}, "timeout", id="timeout-negative"),
            pytest.param({"timeout": float("nan")}, "timeout", id="timeout-nan"),
            pytest.param({"timeout": "10"}, "timeout", id="timeout-text"),
            pytest.param({"timeout": 3600}, "timeout", id="timeout-huge"),
            pytest.param({"recipients": ["a@b.com"]}, "recipients", id="unknown-option"),
        ],
    )
    def test_bad_option(self, deps: HandlerDeps, change: dict[str, Any], option: str) -> None:
        """Each bad option is refused with a message that starts with the option's name."""
        options = {key: value for key, value in (GOOD | change).items() if value is not None}
        with pytest.raises(OptionsError) as raised:
            EmailHandler.from_options(options, deps)
        assert str(raised.value).startswith(f"{option}:")

    def test_single_string_to_says_list(self, deps: HandlerDeps) -> None:
        """`to` given as one string gets the exact hint to use a list."""
        with pytest.raises(OptionsError, match=r"^to: must be a list of addresses$"):
            EmailHandler.from_options(GOOD | {"to": "ops@example.com"}, deps)

    def test_option_errors_never_show_the_password(self, deps: HandlerDeps) -> None:
        """A refused password value is not echoed in the error."""
        with pytest.raises(OptionsError) as raised:
            EmailHandler.from_options(GOOD | {"password": "hunter2"}, deps)
        assert "hunter2" not in str(raised.value)


# --- outcomes ------------------------------------------------------------------------------


def _refused(*codes: int) -> SMTPRecipientsRefused:
    return SMTPRecipientsRefused(
        [SMTPRecipientRefused(code, "no", f"r{i}@example.com") for i, code in enumerate(codes)]
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(SMTPResponseException(451, "later"), Retry, id="451"),
        pytest.param(SMTPResponseException(421, "closing"), Retry, id="421"),
        pytest.param(SMTPResponseException(550, "no"), Fail, id="550"),
        pytest.param(SMTPResponseException(554, "spam"), Fail, id="554"),
        pytest.param(SMTPAuthenticationError(535, "bad credentials"), Fail, id="auth-535"),
        pytest.param(SMTPAuthenticationError(454, "temporary"), Retry, id="auth-454"),
        pytest.param(SMTPAuthenticationError(334, "bad challenge"), Fail, id="auth-odd"),
        pytest.param(SMTPSenderRefused(553, "no", "a@b.com"), Fail, id="sender-553"),
        pytest.param(SMTPSenderRefused(450, "busy", "a@b.com"), Retry, id="sender-450"),
        pytest.param(SMTPConnectResponseError(421, "busy"), Retry, id="greeting-421"),
        pytest.param(SMTPConnectResponseError(554, "go away"), Fail, id="greeting-554"),
        pytest.param(_refused(550, 553), Fail, id="all-recipients-5xx"),
        pytest.param(_refused(550, 450), Retry, id="some-recipients-4xx"),
        pytest.param(SMTPServerDisconnected("gone"), Retry, id="disconnected"),
        pytest.param(SMTPConnectError("refused"), Retry, id="connect"),
        pytest.param(SMTPConnectTimeoutError("slow"), Retry, id="connect-timeout"),
        pytest.param(SMTPReadTimeoutError("slow"), Retry, id="read-timeout"),
        pytest.param(ConnectionRefusedError(111, "refused"), Retry, id="os-refused"),
        pytest.param(TimeoutError(), Retry, id="timeout"),
        pytest.param(SMTPNotSupported("no SMTPUTF8"), Fail, id="not-supported"),
        pytest.param(SMTPException("STARTTLS extension not supported"), Fail, id="no-starttls"),
        pytest.param(ssl.SSLCertVerificationError(1, "self-signed"), Fail, id="untrusted-cert"),
    ],
)
def test_outcome_for_error(error: Exception, expected: type[Retry | Fail]) -> None:
    """4xx, lost connections and timeouts retry; 5xx, bad credentials and mismatches fail."""
    assert type(outcome_for_error(error)) is expected


def test_wrapped_certificate_error_fails() -> None:
    """An untrusted certificate behind aiosmtplib's connect error is still a `Fail`."""
    wrapped = SMTPConnectError("Error connecting")
    wrapped.__cause__ = ssl.SSLCertVerificationError(1, "self-signed")
    assert isinstance(outcome_for_error(wrapped), Fail)


def test_bugs_are_not_outcomes() -> None:
    """An exception that is no SMTP or network failure is left to escape."""
    assert outcome_for_error(KeyError("x")) is None
