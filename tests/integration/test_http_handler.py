"""The `http` handler against real local servers: the recording sink, and a small TLS server for
the IP pinning with SNI. Every request in this file goes to 127.0.0.1 and nowhere else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.clock import FakeClock, SystemClock
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
from service.handlers.signing import sign
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
    """The URLs of the requests the client actually sent (its connect targets)."""

    urls: list[httpx.URL] = field(default_factory=list)

    async def hook(self, request: httpx.Request) -> None:
        """An httpx request event hook."""
        self.urls.append(request.url)


@pytest.fixture
def seen() -> Seen:
    """A recorder of the client's outgoing request URLs."""
    return Seen()


@pytest.fixture
async def deps(seen: Seen) -> AsyncIterator[HandlerDeps]:
    """Handler dependencies with a real client (no proxies from the environment)."""
    async with httpx.AsyncClient(trust_env=False, event_hooks={"request": [seen.hook]}) as client:
        yield HandlerDeps(http=client, clock=SystemClock(), public_url="https://receiver.example")


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
        handler = local(sink, HandlerDeps(deps.http, clock, deps.public_url))
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
        """A hostname is connected to by its checked IP, with the original `Host` header."""
        handler = build(f"http://localhost:{sink.port}/hooks/in", deps, allow_private=True)
        assert await handler.handle(make_delivery()) == Ok("HTTP 200")
        assert [url.host for url in seen.urls] == ["127.0.0.1"]
        assert sink.received[0].headers["host"] == f"localhost:{sink.port}"


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

    @pytest.mark.parametrize("follow", [False, True], ids=["client-default", "client-follows"])
    async def test_redirect_is_not_followed(self, sink: HttpSink, seen: Seen, follow: bool) -> None:
        """A 302 is Fail naming the target host, even on a client that follows redirects."""
        sink.script.append(Reply(status=302, headers={"Location": f"{sink.url}/elsewhere"}))
        async with httpx.AsyncClient(
            trust_env=False, follow_redirects=follow, event_hooks={"request": [seen.hook]}
        ) as client:
            deps = HandlerDeps(client, SystemClock(), "https://receiver.example")
            outcome = await local(sink, deps).handle(make_delivery())
        assert isinstance(outcome, Fail)
        assert outcome.error.startswith("HTTP 302: redirect to 127.0.0.1 not followed")
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
        self, sink: HttpSink, deps: HandlerDeps, seen: Seen, host: str
    ) -> None:
        """Without allow_private, any spelling of loopback is Fail and no request is made."""
        handler = build(f"https://{host}:{sink.port}/hooks/in", deps)
        outcome = await handler.handle(make_delivery())
        name = host.strip("[]")
        assert outcome == Fail(f"refused: {name} resolves to a private address")
        assert seen.urls == []
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
            HandlerDeps(deps.http, clock, deps.public_url),
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


# ---- TLS: the checked IP is dialled, SNI and certificate checks use the original hostname ----


@dataclass
class TlsSink:
    """A tiny HTTPS server on 127.0.0.1 that records SNI names and request heads."""

    port: int = 0
    server_names: list[str | None] = field(default_factory=list)
    heads: list[dict[str, str]] = field(default_factory=list)


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for DNS name `name` only (no IP address in it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@contextlib.asynccontextmanager
async def tls_sink(cert: Path, key: Path) -> AsyncIterator[TlsSink]:
    """Serve HTTPS with `cert` on 127.0.0.1, answering 204 to each request."""
    sink = TlsSink()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def on_sni(_obj: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        sink.server_names.append(name)

    context.sni_callback = on_sni

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")[1:]
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)
            }
            await reader.readexactly(int(headers.get("content-length", "0")))
            sink.heads.append(headers)
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away; nothing to record
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    sink.port = server.sockets[0].getsockname()[1]
    async with server:
        yield sink


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Certificates for `localhost` and for an unrelated name."""
    directory = tmp_path_factory.mktemp("tls")
    return {name: make_certificate(directory, name) for name in ("localhost", "other.example")}


@contextlib.asynccontextmanager
async def trusting_client(cert: Path, seen: Seen) -> AsyncIterator[HandlerDeps]:
    """Dependencies whose client trusts `cert` as a CA."""
    context = ssl.create_default_context(cafile=str(cert))
    async with httpx.AsyncClient(
        verify=context, trust_env=False, event_hooks={"request": [seen.hook]}
    ) as client:
        yield HandlerDeps(client, SystemClock(), "https://receiver.example")


class TestTlsPinning:
    async def test_sni_and_certificate_use_the_hostname(
        self, certificates: dict[str, tuple[Path, Path]], seen: Seen
    ) -> None:
        """Dialling 127.0.0.1 for `localhost` sends SNI `localhost` and accepts its certificate."""
        cert, key = certificates["localhost"]
        async with tls_sink(cert, key) as server, trusting_client(cert, seen) as deps:
            handler = build(f"https://localhost:{server.port}/hook", deps, allow_private=True)
            outcome = await handler.handle(make_delivery())
        assert outcome == Ok("HTTP 204")
        assert [url.host for url in seen.urls] == ["127.0.0.1"]
        assert server.server_names == ["localhost"]
        [head] = server.heads
        assert head["host"] == f"localhost:{server.port}"
        assert head["connection"] == "close"

    async def test_certificate_for_another_name_is_refused(
        self, certificates: dict[str, tuple[Path, Path]], seen: Seen
    ) -> None:
        """A certificate not valid for the URL's hostname fails the handshake: Retry, no request."""
        cert, key = certificates["other.example"]
        async with tls_sink(cert, key) as server, trusting_client(cert, seen) as deps:
            handler = build(f"https://localhost:{server.port}/hook", deps, allow_private=True)
            outcome = await handler.handle(make_delivery())
        assert isinstance(outcome, Retry)
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.error
        assert server.heads == []
