"""The `http` handler against real local servers: the recording sink, and a small keep-alive
(TLS) server for the IP pinning with SNI, the pooled connections and the re-checks of DNS
answers. Every request in this file goes to 127.0.0.1 and nowhere else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from yarl import URL

from service.clock import FakeClock, SystemClock
from service.handlers.addresses import IPAddress, resolve
from service.handlers.base import (
    Delivery,
    Fail,
    HandlerDeps,
    Ok,
    OptionsError,
    Retry,
    event_document,
)
from service.handlers.http import HttpForwardHandler
from service.handlers.outbound import RECHECK_SECONDS, Outbound
from service.handlers.signing import sign
from tests.certs import ServerCertificate, TestAuthority
from tests.deliveries import a_delivery
from tests.helpers import SECRET
from tests.sinks import HttpSink, Reply, http_sink
from tests.v1a_verifier import v1a_entries, verify_v1a

DELIVERY_ID = "dlv_019a63f1c2e4a1b2c3d4e5f6a7b8"
# A fixed ed25519 seed; its `whpk_` public key is derived here with `cryptography` alone, as the
# destination's owner would hold it, not by the code under test.
SEED = bytes(range(32))
PRIVATE_KEY = "whsk_" + base64.b64encode(SEED).decode()
PUBLIC_KEY = (
    "whpk_"
    + base64.b64encode(
        Ed25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes_raw()
    ).decode()
)
OTHER_PUBLIC_KEY = (
    "whpk_"
    + base64.b64encode(
        Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key().public_bytes_raw()
    ).decode()
)


def make_delivery(
    *, attempt: int = 1, model: str = "meta-llama/Llama-3.3-70B-Instruct", **payload: Any
) -> Delivery:
    """A delivery of one `training.completed` event to the route `forward`."""
    return a_delivery(
        id=DELIVERY_ID,
        attempt=attempt,
        route="forward",
        event_id="evt_019a63f1c2e4aabbccddeeff",
        payload={"event": "training.completed", **payload},
        # The event's own ids differ from the stored event's: the forward must send both right.
        dedup_key="id:evt-1",
        external_id="evt-1",
        model=model,
        artifact="s3://models/job-1",
        metrics={"loss": 0.125},
    )


def build(url: str, deps: HandlerDeps, **options: Any) -> HttpForwardHandler:
    """A handler for `url` with the test secret and `options`."""
    return HttpForwardHandler.from_options({"url": url, "secret": SECRET, **options}, deps)


def local(sink: HttpSink, deps: HandlerDeps, **options: Any) -> HttpForwardHandler:
    """A handler forwarding to the sink's `/hooks/in` (allowed: it is on 127.0.0.1)."""
    return build(f"{sink.url}/hooks/in", deps, allow_private=True, **options)


@dataclass
class Seen:
    """The outbound path's DNS lookups; `answers` gives names of its own (the `.test` names,
    which no real resolver knows), one answer per lookup, the last one repeated."""

    lookups: list[str] = field(default_factory=list)
    answers: dict[str, list[list[str]]] = field(default_factory=dict)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The resolver given to `Outbound`."""
        self.lookups.append(host)
        scripted = self.answers.get(host)
        if scripted is None:
            return await resolve(host, port)
        answer = scripted.pop(0) if len(scripted) > 1 else scripted[0]
        return [ipaddress.ip_address(address) for address in answer]


@dataclass
class Ticks:
    """The outbound path's monotonic clock, moved by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def seen() -> Seen:
    """A recorder (and scripter) of the outbound path's lookups."""
    return Seen()


@pytest.fixture
def ticks() -> Ticks:
    """The outbound path's clock."""
    return Ticks()


@contextlib.asynccontextmanager
async def outbound_deps(seen: Seen, ticks: Ticks) -> AsyncIterator[HandlerDeps]:
    """Handler dependencies with a real outbound path, closed afterwards."""
    outbound = Outbound(resolver=seen.resolve, clock=ticks)
    try:
        async with httpx.AsyncClient(trust_env=False) as client:
            yield HandlerDeps(client, SystemClock(), "https://receiver.example", outbound=outbound)
    finally:
        await outbound.aclose()


@pytest.fixture
async def deps(seen: Seen, ticks: Ticks) -> AsyncIterator[HandlerDeps]:
    """Handler dependencies with a real outbound path (no proxies from the environment)."""
    async with outbound_deps(seen, ticks) as made:
        yield made


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    """A recording HTTP server on 127.0.0.1."""
    async with http_sink() as server:
        yield server


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class TestDelivery:
    async def test_sink_receives_the_event_document(
        self, sink: HttpSink, deps: HandlerDeps
    ) -> None:
        """A 200 is Ok and the sink got the compact JSON event document by POST."""
        delivery = make_delivery()
        outcome = await local(sink, deps).handle(delivery)
        assert outcome == Ok("HTTP 200")
        [received] = sink.received
        assert (received.method, received.path) == ("POST", "/hooks/in")
        assert received.body == orjson.dumps(event_document(delivery))
        assert received.headers["content-type"] == "application/json"
        assert received.headers["user-agent"].startswith("llmtune-receiver")

    async def test_headers_verify_with_the_reference_library(
        self, sink: HttpSink, deps: HandlerDeps
    ) -> None:
        """The Standard Webhooks library verifies the request, non-ASCII body included."""
        delivery = make_delivery(model="Modèle-ß", note="日本語 ✓")
        await local(sink, deps).handle(delivery)
        [received] = sink.received
        assert Webhook(SECRET).verify(received.body, received.headers) == event_document(delivery)
        assert received.headers["webhook-id"] == DELIVERY_ID

    async def test_retry_keeps_the_id_and_takes_a_new_timestamp(
        self, sink: HttpSink, deps: HandlerDeps
    ) -> None:
        """A second attempt has the same `webhook-id`; the timestamp is the clock's, in seconds."""
        start = datetime.now(UTC)
        clock = FakeClock(start)
        handler = local(sink, replace(deps, clock=clock))
        await handler.handle(make_delivery(attempt=1))
        clock.advance(timedelta(seconds=90))
        await handler.handle(make_delivery(attempt=2))
        first, second = sink.received
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == DELIVERY_ID
        assert int(first.headers["webhook-timestamp"]) == int(start.timestamp())
        assert int(second.headers["webhook-timestamp"]) == int(start.timestamp()) + 90
        for received in (first, second):
            Webhook(SECRET).verify(received.body, received.headers)

    async def test_request_goes_to_the_resolved_address(
        self, sink: HttpSink, deps: HandlerDeps, seen: Seen
    ) -> None:
        """A hostname is connected to by its checked IP, with the original `Host` header: the
        name is known to the checked lookup only, so no other lookup could have found the sink."""
        seen.answers["sink.test"] = [["127.0.0.1"]]
        handler = build(f"http://sink.test:{sink.port}/hooks/in", deps, allow_private=True)
        assert await handler.handle(make_delivery()) == Ok("HTTP 200")
        assert seen.lookups == ["sink.test"]
        assert sink.received[0].headers["host"] == f"sink.test:{sink.port}"


class TestAnswers:
    async def test_server_error_is_retried(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """A 500 is Retry, with the status and the start of the answer."""
        sink.script.append(Reply(status=500, body="database down"))
        outcome = await local(sink, deps).handle(make_delivery())
        assert outcome == Retry("HTTP 500: database down")

    async def test_rate_limit_passes_retry_after(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """A 429 with `Retry-After: 30` is Retry after 30 seconds."""
        sink.script.append(Reply(status=429, body="slow down", headers={"Retry-After": "30"}))
        outcome = await local(sink, deps).handle(make_delivery())
        assert outcome == Retry("HTTP 429: slow down", after=30.0)

    async def test_bad_request_fails(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """A 400 is Fail: sending the same request again cannot help."""
        sink.script.append(Reply(status=400, body="unknown field"))
        outcome = await local(sink, deps).handle(make_delivery())
        assert outcome == Fail("HTTP 400: unknown field")

    async def test_long_error_answers_are_cut(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """A huge error page does not end up whole in the attempt record."""
        sink.script.append(Reply(status=503, body="x" * 100_000))
        outcome = await local(sink, deps).handle(make_delivery())
        assert isinstance(outcome, Retry)
        assert len(outcome.error) < 600

    @pytest.mark.parametrize("status", [301, 302, 307, 308])
    async def test_redirect_is_not_followed(
        self, sink: HttpSink, deps: HandlerDeps, status: int
    ) -> None:
        """A redirect is Fail naming the target host, and the target is never asked."""
        sink.script.append(Reply(status=status, headers={"Location": f"{sink.url}/elsewhere"}))
        outcome = await local(sink, deps).handle(make_delivery())
        assert isinstance(outcome, Fail)
        assert outcome.error.startswith(f"HTTP {status}: redirect to 127.0.0.1 not followed")
        assert [received.path for received in sink.received] == ["/hooks/in"]

    async def test_closed_port_is_retried(self, deps: HandlerDeps) -> None:
        """Connection refused is Retry, naming the exception."""
        handler = build(f"http://127.0.0.1:{closed_port()}/", deps, allow_private=True)
        outcome = await handler.handle(make_delivery())
        assert isinstance(outcome, Retry)
        assert outcome.error.startswith("ConnectError")

    async def test_slow_answer_is_retried(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """An answer slower than `timeout` is Retry, without waiting for it."""
        sink.script.append(Reply(delay=1.5))
        started = asyncio.get_running_loop().time()
        outcome = await local(sink, deps, timeout=0.3).handle(make_delivery())
        assert isinstance(outcome, Retry)
        assert "Timeout" in outcome.error
        assert asyncio.get_running_loop().time() - started < 1.2
        assert SECRET not in outcome.error


class TestGuard:
    @pytest.mark.parametrize(
        "host",
        ["127.0.0.1", "localhost", "0x7f.1", "2130706433", "127.1", "[::1]", "[::ffff:127.0.0.1]"],
    )
    async def test_private_targets_are_refused_before_sending(
        self, sink: HttpSink, deps: HandlerDeps, host: str
    ) -> None:
        """Without allow_private, any spelling of loopback is Fail and no request is made."""
        handler = build(f"https://{host}:{sink.port}/hooks/in", deps)
        outcome = await handler.handle(make_delivery())
        name = host.strip("[]")
        assert outcome == Fail(f"refused: {name} resolves to a private address")
        assert sink.received == []

    async def test_plain_http_needs_allow_private(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """`http://` without allow_private is an options error naming `url`."""
        with pytest.raises(OptionsError, match=r"^url: must be https://"):
            build(f"http://localhost:{sink.port}/", deps)


class TestOptions:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            pytest.param({"secret": SECRET}, "url: required", id="no-url"),
            pytest.param({"url": "https://a.example"}, "secret: required", id="no-secret"),
            pytest.param(
                {"url": "https://a.example", "secret": "plain-text-secret-1234567890"},
                "secret: must start with 'whsec_'",
                id="secret-without-prefix",
            ),
            pytest.param(
                {"url": "https://a.example", "secret": "whsec_c2hvcnQ="},
                "secret: must encode 24 to 64 bytes",
                id="short-secret",
            ),
            pytest.param(
                {"url": "ftp://a.example", "secret": SECRET}, "url: must be an https", id="ftp"
            ),
            pytest.param(
                {"url": "https://0177.0.0.1/", "secret": SECRET},
                "url: not a valid URL",
                id="octal-ip-unparsable",
            ),
            pytest.param(
                {"url": f"https://{'a' * 64}.example/", "secret": SECRET},
                "url: the host is not a valid DNS name",
                id="label-too-long",
            ),
            pytest.param({"url": 7, "secret": SECRET}, "url: must be a string", id="url-type"),
            pytest.param(
                {"url": "https://a.example", "secret": SECRET, "timeout": 0},
                "timeout: must be more than 0",
                id="zero-timeout",
            ),
            pytest.param(
                {"url": "https://a.example", "secret": SECRET, "timeout": "10"},
                "timeout: must be a number",
                id="timeout-text",
            ),
            pytest.param(
                {"url": "https://a.example", "secret": SECRET, "allow_private": "yes"},
                "allow_private: must be true or false",
                id="allow-private-text",
            ),
            pytest.param(
                {"url": "https://a.example", "secret": SECRET, "headers": {}},
                "headers: unknown option",
                id="unknown-option",
            ),
        ],
    )
    def test_bad_options(self, deps: HandlerDeps, options: dict[str, Any], message: str) -> None:
        """Each bad option is an OptionsError that starts with the option's name."""
        with pytest.raises(OptionsError) as caught:
            HttpForwardHandler.from_options(options, deps)
        assert str(caught.value).startswith(message)

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            pytest.param(
                {"secret": SECRET, "signing": "v2"},
                'signing: must be "v1", "v1a" or "both"',
                id="unknown-signing",
            ),
            pytest.param(
                {"secret": SECRET, "signing": True},
                "signing: must be",
                id="signing-not-text",
            ),
            pytest.param(
                {"secret": SECRET, "private_key": PRIVATE_KEY},
                'private_key: unused with signing = "v1"',
                id="v1-with-private-key",
            ),
            pytest.param(
                {"signing": "v1a"},
                'private_key: required with signing = "v1a"',
                id="v1a-without-private-key",
            ),
            pytest.param(
                {"signing": "v1a", "private_key": PRIVATE_KEY, "secret": SECRET},
                'secret: unused with signing = "v1a"',
                id="v1a-with-secret",
            ),
            pytest.param(
                {"signing": "both", "private_key": PRIVATE_KEY},
                'secret: required with signing = "both"',
                id="both-without-secret",
            ),
            pytest.param(
                {"signing": "both", "secret": SECRET},
                'private_key: required with signing = "both"',
                id="both-without-private-key",
            ),
            pytest.param(
                {"signing": "v1a", "private_key": 7},
                "private_key: must be a string",
                id="private-key-type",
            ),
            pytest.param(
                {"signing": "v1a", "private_key": PRIVATE_KEY.removeprefix("whsk_")},
                "private_key: must start with 'whsk_'",
                id="private-key-without-prefix",
            ),
            pytest.param(
                {"signing": "v1a", "private_key": PUBLIC_KEY},
                "private_key: must start with 'whsk_' ('whpk_' is public)",
                id="public-key-as-private",
            ),
            pytest.param(
                {"signing": "v1a", "private_key": PRIVATE_KEY[:-8]},
                "private_key: must ",
                id="private-key-cut",
            ),
            pytest.param(
                {
                    "signing": "v1a",
                    "private_key": "whsk_"
                    + base64.b64encode(SEED + base64.b64decode(OTHER_PUBLIC_KEY[5:])).decode(),
                },
                "private_key: the last 32 bytes are not the public key",
                id="mismatched-public-half",
            ),
        ],
    )
    def test_bad_signing_options(
        self, deps: HandlerDeps, options: dict[str, Any], message: str
    ) -> None:
        """Each signing rule is an OptionsError naming the option, and no key is in it."""
        with pytest.raises(OptionsError) as caught:
            HttpForwardHandler.from_options({"url": "https://a.example", **options}, deps)
        text = str(caught.value)
        assert text.startswith(message)
        for key in (SECRET, PRIVATE_KEY, PRIVATE_KEY.removeprefix("whsk_")[:12]):
            assert key not in text

    def test_defaults(self, deps: HandlerDeps) -> None:
        """Only url and secret are needed; the guard is on and the timeout is 10 seconds."""
        handler = build("https://a.example/hook", deps)
        assert (handler.allow_private, handler.timeout) == (False, 10.0)

    def test_secret_stays_out_of_repr(self, deps: HandlerDeps) -> None:
        """The handler's repr (which may be logged) does not show the secret."""
        assert SECRET not in repr(build("https://a.example/hook", deps))


class TestSigning:
    async def test_both_signatures_verify_at_the_sink(
        self, sink: HttpSink, deps: HandlerDeps
    ) -> None:
        """`signing = "both"`: one header `v1,... v1a,...`; the reference library verifies `v1`
        with the secret, the independent verifier `v1a` with the public key alone."""
        delivery = make_delivery(model="Modèle-ß", note="日本語 ✓")
        handler = local(sink, deps, signing="both", private_key=PRIVATE_KEY)
        assert await handler.handle(delivery) == Ok("HTTP 200")
        [received] = sink.received
        entries = received.headers["webhook-signature"].split(" ")
        assert [entry.split(",", 1)[0] for entry in entries] == ["v1", "v1a"]
        assert Webhook(SECRET).verify(received.body, received.headers) == event_document(delivery)
        assert verify_v1a(PUBLIC_KEY, received.headers, received.body, now=int(time.time()))
        assert not verify_v1a(OTHER_PUBLIC_KEY, received.headers, received.body)
        assert not verify_v1a(PUBLIC_KEY, received.headers, received.body + b" ")

    async def test_v1a_alone(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """`signing = "v1a"` needs no secret and sends only a `v1a` signature."""
        delivery = make_delivery()
        handler = HttpForwardHandler.from_options(
            {
                "url": f"{sink.url}/hooks/in",
                "allow_private": True,
                "signing": "v1a",
                "private_key": PRIVATE_KEY,
            },
            deps,
        )
        assert await handler.handle(delivery) == Ok("HTTP 200")
        [received] = sink.received
        [entry] = received.headers["webhook-signature"].split(" ")
        assert entry.startswith("v1a,")
        assert v1a_entries(entry) == [entry.removeprefix("v1a,")]
        assert verify_v1a(PUBLIC_KEY, received.headers, received.body, now=int(time.time()))
        assert received.body == orjson.dumps(event_document(delivery))
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(received.body, received.headers)

    async def test_v1_stays_the_default(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """Without `signing`, the header is the one `v1` HMAC signature, as before."""
        handler = local(sink, deps)
        assert (handler.signing, handler.public_key, handler.private_key) == ("v1", None, None)
        await handler.handle(make_delivery())
        [received] = sink.received
        headers = received.headers
        expected = sign(SECRET, DELIVERY_ID, int(headers["webhook-timestamp"]), received.body)
        assert headers["webhook-signature"] == expected
        assert v1a_entries(headers["webhook-signature"]) == []

    async def test_retry_is_signed_again(self, sink: HttpSink, deps: HandlerDeps) -> None:
        """A later attempt's new timestamp is covered by a new `v1a` signature."""
        start = datetime.now(UTC)
        clock = FakeClock(start)
        handler = local(
            sink,
            replace(deps, clock=clock),
            signing="both",
            private_key=PRIVATE_KEY,
        )
        await handler.handle(make_delivery(attempt=1))
        clock.advance(timedelta(seconds=90))
        await handler.handle(make_delivery(attempt=2))
        first, second = sink.received
        assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
        for received in (first, second):
            assert verify_v1a(PUBLIC_KEY, received.headers, received.body)

    @pytest.mark.parametrize("signing", ["v1a", "both"])
    def test_public_key_is_on_the_handler(self, deps: HandlerDeps, signing: str) -> None:
        """The handler gives the `whpk_` key its `v1a` signatures verify with."""
        options = {"url": "https://a.example", "signing": signing, "private_key": PRIVATE_KEY}
        if signing == "both":
            options["secret"] = SECRET
        assert HttpForwardHandler.from_options(options, deps).public_key == PUBLIC_KEY

    def test_private_key_stays_out_of_repr(self, deps: HandlerDeps) -> None:
        """The handler's repr (which may be logged) shows neither key."""
        handler = build("https://a.example", deps, signing="both", private_key=PRIVATE_KEY)
        text = repr(handler)
        assert PRIVATE_KEY not in text
        assert SECRET not in text
        assert PRIVATE_KEY.removeprefix("whsk_")[:12] not in text


# ---- Pooled connections: the checked IP is dialled, TLS checks the hostname, kept alive ----


@dataclass
class KeepAliveSink:
    """A small HTTP/1.1 server on 127.0.0.1 (TLS when given a certificate) that keeps
    connections open, answers 204, and counts connections, handshakes and SNI names."""

    port: int = 0
    connections: int = 0
    handshakes: int = 0
    server_names: list[str | None] = field(default_factory=list)
    heads: list[dict[str, str]] = field(default_factory=list)


async def _serve_requests(
    sink: KeepAliveSink, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while True:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")[1:]
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        await reader.readexactly(int(headers.get("content-length", "0")))
        sink.heads.append(headers)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()


@contextlib.asynccontextmanager
async def keep_alive_sink(
    certificate: ServerCertificate | None = None,
) -> AsyncIterator[KeepAliveSink]:
    """Serve on 127.0.0.1 until the block ends."""
    sink = KeepAliveSink()
    context = None
    if certificate is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate.cert, certificate.key)

        def on_sni(_obj: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
            sink.server_names.append(name)
            sink.handshakes += 1

        context.sni_callback = on_sni

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sink.connections += 1
        try:
            await _serve_requests(sink, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the client went away (or refused our certificate)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    sink.port = server.sockets[0].getsockname()[1]
    async with server:
        yield sink


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> TestAuthority:
    """A throwaway CA."""
    return TestAuthority(tmp_path_factory.mktemp("tls"))


def tls_route(
    server: KeepAliveSink, deps: HandlerDeps, authority: TestAuthority, *, host: str = "localhost"
) -> HttpForwardHandler:
    """A handler for `https://host:port/hook` that trusts the test CA through `ca_file`."""
    url = f"https://{host}:{server.port}/hook"
    return build(url, deps, allow_private=True, ca_file=str(authority.ca_file))


class TestTlsPinning:
    async def test_sni_and_certificate_use_the_hostname(
        self, authority: TestAuthority, deps: HandlerDeps, seen: Seen
    ) -> None:
        """Dialling 127.0.0.1 for `localhost` sends SNI `localhost`, accepts its certificate and
        keeps the connection (no `connection: close`)."""
        seen.answers["localhost"] = [["127.0.0.1"]]
        async with keep_alive_sink(authority.issue("localhost")) as server:
            outcome = await tls_route(server, deps, authority).handle(make_delivery())
        assert outcome == Ok("HTTP 204")
        assert server.server_names == ["localhost"]
        [head] = server.heads
        assert head["host"] == f"localhost:{server.port}"
        assert head.get("connection", "keep-alive").lower() == "keep-alive"

    async def test_certificate_for_another_name_is_refused(
        self, authority: TestAuthority, deps: HandlerDeps, seen: Seen
    ) -> None:
        """A certificate not valid for the URL's hostname fails the handshake: Retry, no request."""
        seen.answers["localhost"] = [["127.0.0.1"]]
        async with keep_alive_sink(authority.issue("other.example")) as server:
            outcome = await tls_route(server, deps, authority).handle(make_delivery())
        assert isinstance(outcome, Retry)
        assert outcome.error.startswith("ConnectError")
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.error
        assert server.heads == []

    async def test_untrusted_authority_is_refused(
        self, authority: TestAuthority, deps: HandlerDeps, seen: Seen
    ) -> None:
        """Without `ca_file`, a certificate from a CA the service does not trust is refused."""
        seen.answers["localhost"] = [["127.0.0.1"]]
        async with keep_alive_sink(authority.issue("localhost")) as server:
            url = f"https://localhost:{server.port}/hook"
            outcome = await build(url, deps, allow_private=True).handle(make_delivery())
        assert isinstance(outcome, Retry)
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.error
        assert server.heads == []

    async def test_deliveries_share_kept_alive_connections(
        self, authority: TestAuthority, deps: HandlerDeps, seen: Seen
    ) -> None:
        """40 deliveries, at most 8 at a time, go over at most 8 TLS connections (one handshake
        each), and the host is looked up once."""
        seen.answers["localhost"] = [["127.0.0.1"]]
        limit = asyncio.Semaphore(8)
        async with keep_alive_sink(authority.issue("localhost")) as server:
            handler = tls_route(server, deps, authority)

            async def deliver(number: int) -> object:
                async with limit:
                    return await handler.handle(make_delivery(attempt=number))

            outcomes = await asyncio.gather(*(deliver(n) for n in range(1, 41)))
        assert set(outcomes) == {Ok("HTTP 204")}
        assert len(server.heads) == 40
        assert 1 <= server.connections <= 8
        assert server.handshakes == server.connections
        assert seen.lookups == ["localhost"]

    async def test_one_by_one_deliveries_use_one_connection(
        self, authority: TestAuthority, deps: HandlerDeps, seen: Seen
    ) -> None:
        """Ten deliveries one after another are one TLS connection."""
        seen.answers["localhost"] = [["127.0.0.1"]]
        async with keep_alive_sink(authority.issue("localhost")) as server:
            handler = tls_route(server, deps, authority)
            for number in range(1, 11):
                assert await handler.handle(make_delivery(attempt=number)) == Ok("HTTP 204")
        assert (server.connections, server.handshakes, len(server.heads)) == (1, 1, 10)

    async def test_connection_is_never_reused_for_another_hostname(
        self, authority: TestAuthority, deps: HandlerDeps, seen: Seen
    ) -> None:
        """A connection verified for `localhost` is not reused for another name on the same
        address and port: that name's certificate check runs, and fails here."""
        seen.answers["localhost"] = [["127.0.0.1"]]
        seen.answers["alias.test"] = [["127.0.0.1"]]
        async with keep_alive_sink(authority.issue("localhost")) as server:
            ok = await tls_route(server, deps, authority).handle(make_delivery())
            other = await tls_route(server, deps, authority, host="alias.test").handle(
                make_delivery()
            )
        assert ok == Ok("HTTP 204")
        assert isinstance(other, Retry)
        assert "CERTIFICATE_VERIFY_FAILED" in other.error
        assert server.server_names == ["localhost", "alias.test"]
        assert len(server.heads) == 1

    @pytest.mark.parametrize(
        ("ca_file", "url", "message"),
        [
            pytest.param(
                "missing.pem", "https://a.example", "ca_file: cannot be loaded", id="gone"
            ),
            pytest.param("not-pem.txt", "https://a.example", "ca_file: cannot be loaded", id="bad"),
            pytest.param("ca.pem", "http://a.example", "ca_file: only used with", id="http"),
            pytest.param("", "https://a.example", "ca_file: must be the path", id="empty"),
        ],
    )
    def test_bad_ca_file(
        self, authority: TestAuthority, deps: HandlerDeps, ca_file: str, url: str, message: str
    ) -> None:
        """`ca_file` must be a loadable PEM bundle, and only on an https:// route."""
        (authority.directory / "not-pem.txt").write_text("hello")
        path = str(authority.directory / ca_file) if ca_file else ""
        with pytest.raises(OptionsError, match=f"^{message}"):
            build(url, deps, allow_private=True, ca_file=path)


class TestRechecks:
    async def test_answer_is_looked_up_again_after_the_interval(
        self, deps: HandlerDeps, seen: Seen, ticks: Ticks
    ) -> None:
        """Within RECHECK_SECONDS the checked answer is reused; after it the host is looked up
        again, and an unchanged answer keeps the pooled connection."""
        seen.answers["sink.test"] = [["127.0.0.1"]]
        async with keep_alive_sink() as server:
            handler = build(f"http://sink.test:{server.port}/", deps, allow_private=True)
            for _ in range(3):
                assert await handler.handle(make_delivery()) == Ok("HTTP 204")
            assert seen.lookups == ["sink.test"]
            ticks.now += RECHECK_SECONDS
            assert await handler.handle(make_delivery()) == Ok("HTTP 204")
        assert seen.lookups == ["sink.test", "sink.test"]
        assert (server.connections, len(server.heads)) == (1, 4)

    async def test_changed_answer_is_dialled_and_the_old_connection_dropped(
        self, deps: HandlerDeps, seen: Seen, ticks: Ticks
    ) -> None:
        """Once the answer no longer holds 127.0.0.1, the kept-alive connection to it is not
        used: the next delivery dials the new address (127.0.0.2, where nothing listens)."""
        seen.answers["sink.test"] = [["127.0.0.1"], ["127.0.0.2"]]
        async with keep_alive_sink() as server:
            handler = build(f"http://sink.test:{server.port}/", deps, allow_private=True)
            assert await handler.handle(make_delivery()) == Ok("HTTP 204")
            ticks.now += RECHECK_SECONDS
            outcome = await handler.handle(make_delivery())
        assert isinstance(outcome, Retry)
        assert outcome.error.startswith("ConnectError")
        assert len(server.heads) == 1

    async def test_rebinding_to_a_private_address_is_refused(
        self, deps: HandlerDeps, seen: Seen, ticks: Ticks
    ) -> None:
        """A name first checked public and later answering a private address is refused at the
        re-check, before anything is sent (the public address is never dialled here)."""
        seen.answers["rebind.test"] = [["93.184.216.34"], ["93.184.216.34", "127.0.0.1"]]
        handler = build("https://rebind.test/hook", deps)
        pinned = await deps.outbound.addresses(URL("https://rebind.test/hook"), allow_private=False)
        assert pinned == (ipaddress.ip_address("93.184.216.34"),)
        ticks.now += RECHECK_SECONDS
        outcome = await handler.handle(make_delivery())
        assert outcome == Fail("refused: rebind.test resolves to a private address")
        assert seen.lookups == ["rebind.test", "rebind.test"]

    async def test_connection_failure_looks_the_host_up_again(
        self, deps: HandlerDeps, seen: Seen
    ) -> None:
        """After a failed connection the next attempt does not wait for the interval: a moved
        destination is found at once."""
        seen.answers["sink.test"] = [["127.0.0.2"], ["127.0.0.1"]]
        async with keep_alive_sink() as server:
            handler = build(f"http://sink.test:{server.port}/", deps, allow_private=True)
            failed = await handler.handle(make_delivery())
            assert isinstance(failed, Retry)
            assert await handler.handle(make_delivery()) == Ok("HTTP 204")
        assert seen.lookups == ["sink.test", "sink.test"]

    async def test_request_in_flight_survives_a_changed_answer(
        self, sink: HttpSink, deps: HandlerDeps, seen: Seen, ticks: Ticks
    ) -> None:
        """A slow request on the old address still gets its answer when a re-check, meanwhile,
        replaces the pool (its session closes only after that request)."""
        seen.answers["sink.test"] = [["127.0.0.1"], ["127.0.0.2"]]
        sink.script.append(Reply(delay=0.5))
        handler = build(f"http://sink.test:{sink.port}/hooks/in", deps, allow_private=True)
        slow = asyncio.create_task(handler.handle(make_delivery()))
        await sink.wait_for(1)
        ticks.now += RECHECK_SECONDS
        moved = await handler.handle(make_delivery())
        assert isinstance(moved, Retry)
        assert await slow == Ok("HTTP 200")
