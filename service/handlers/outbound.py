"""The outbound HTTP path of the `http` and `slack` handlers: POSTs over kept-alive connections,
one aiohttp connection pool per destination (scheme, host, port, the SSRF choice, the trusted
CAs), each dialling only addresses that were resolved and checked beforehand.

A pool resolves its host (`addresses.resolve`) and, unless the route allows private addresses,
refuses when any address is not public (`addresses.first_refused`). Its connector asks a resolver
that answers with those checked addresses only, so a DNS answer that changes between the check
and the connection (rebinding) is never used. TLS still sends SNI and verifies the certificate
for the URL's hostname, and the `Host` header is the URL's: a pooled connection is only ever
reused for the very hostname it was verified for. The check is redone every `RECHECK_SECONDS`
and after a connection failure; a pool keeps its connections while the answer still holds every
address it dialled, and is replaced (the old one closed once its requests end) when one is gone.

Redirects are never followed and an answer's body is read up to a limit. With tracing on, each
POST is a client span (as httpx's instrumentation made them) and carries its `traceparent`.
Nothing here logs, and errors name the exception and the connection trouble only (never a
header, a body or a path).
The service's composition root owns one `Outbound` and closes it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDictProxy
from yarl import URL

from service.handlers.addresses import IPAddress, first_refused, resolve
from service.tracing import Attributes, OtelTracing

RECHECK_SECONDS = 60.0  # how long a checked DNS answer is used before it is looked up again
Resolve = Callable[[str, int], Awaitable[list[IPAddress]]]
Clock = Callable[[], float]  # monotonic seconds


def _user_agent() -> str:
    try:
        return f"llmtune-receiver/{version('llmtune-receiver')}"
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "llmtune-receiver"


USER_AGENT = _user_agent()


class Refused(Exception):
    """The host resolves to an address that is not public, and the route does not allow it."""


class NoAddress(Exception):
    """The host resolves to no address at all."""


class SendError(Exception):
    """The request could not be completed; `kind` names the trouble as httpx would have."""

    def __init__(self, kind: str, detail: str, *, connected: bool) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.connected = connected


@dataclass(frozen=True, slots=True)
class Answer:
    """A destination's answer: status, headers, and the body's start (at most the limit)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Destination:
    """What a connection pool is for; requests differing in any of these never share one."""

    scheme: str
    host: str  # as on the wire (IDNA), for DNS, SNI and the certificate check
    port: int
    allow_private: bool
    ca_file: str | None


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The CAs a destination's certificate must chain to: `ca_file` alone when given, else the
    ones the service has always trusted (SSL_CERT_FILE / SSL_CERT_DIR, else certifi's bundle)."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=ca_file)
    return httpx.create_ssl_context(trust_env=True)


class _Pinned(AbstractResolver):
    """Answers the connector with the pool's checked addresses and nothing else."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found: list[ResolveResult] = []
        for address in self._pool.addresses:
            kind = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family in (socket.AF_UNSPEC, kind):
                found.append(
                    ResolveResult(
                        hostname=host,
                        host=str(address),
                        port=port,
                        family=kind,
                        proto=socket.IPPROTO_TCP,
                        flags=socket.AI_NUMERICHOST,
                    )
                )
        if not found:
            raise OSError(f"{host} has no checked address")
        return found

    async def close(self) -> None:
        return None


class _Pool:
    """One destination's sessions: the current one, and replaced ones still finishing requests."""

    def __init__(
        self, destination: Destination, tls: ssl.SSLContext, resolver: Resolve, clock: Clock
    ) -> None:
        self.destination = destination
        self.addresses: tuple[IPAddress, ...] = ()
        self._tls = tls
        self._resolve = resolver
        self._clock = clock
        self._fresh_until = float("-inf")
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._in_flight: dict[aiohttp.ClientSession, int] = {}

    @asynccontextmanager
    async def session(self) -> AsyncIterator[aiohttp.ClientSession]:
        """The current session, its addresses checked within RECHECK_SECONDS; raises `Refused`,
        `NoAddress` or `OSError` (the name does not resolve)."""
        if self._clock() >= self._fresh_until or self._session is None:
            async with self._lock:
                if self._clock() >= self._fresh_until or self._session is None:
                    await self._recheck()
        session = self._session
        if session is None:  # _recheck either made one or raised
            raise RuntimeError("no session after the check")
        self._in_flight[session] = self._in_flight.get(session, 0) + 1
        try:
            yield session
        finally:
            if session in self._in_flight:  # else `aclose` has closed it already
                self._in_flight[session] -= 1
                if session is not self._session and not self._in_flight[session]:
                    del self._in_flight[session]
                    await session.close()

    def expire(self) -> None:
        """Look the host up again before the next request (a connection attempt failed)."""
        self._fresh_until = float("-inf")

    async def aclose(self) -> None:
        """Close every session, busy or not."""
        sessions = set(self._in_flight) | ({self._session} if self._session else set())
        self._session = None
        self._in_flight.clear()
        for session in sessions:
            await session.close()

    async def _recheck(self) -> None:
        found = await self._resolve(self.destination.host, self.destination.port)
        if not self.destination.allow_private and first_refused(found) is not None:
            await self._replace(None, ())
            raise Refused(self.destination.host)
        if not found:
            await self._replace(None, ())
            raise NoAddress(self.destination.host)
        if self._session is None or not set(self.addresses) <= set(found):
            await self._replace(self._new_session(), tuple(found))
        else:
            self.addresses = tuple(found)
        self._fresh_until = self._clock() + RECHECK_SECONDS

    async def _replace(
        self, session: aiohttp.ClientSession | None, addresses: tuple[IPAddress, ...]
    ) -> None:
        """Make `session` current; the old one closes now if idle, else after its last request."""
        old, self._session, self.addresses = self._session, session, addresses
        if old is not None and not self._in_flight.get(old):
            self._in_flight.pop(old, None)
            await old.close()

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            resolver=_Pinned(self),
            use_dns_cache=False,  # every connection asks `_Pinned`, which never looks anything up
            ssl=self._tls,
        )
        return aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,  # a proxy from the environment would dial addresses never checked
            auto_decompress=True,
            cookie_jar=aiohttp.DummyCookieJar(),
        )


class Outbound:
    """Pooled, checked POSTs to the handlers' destinations; close with `aclose()`."""

    def __init__(
        self,
        *,
        resolver: Resolve = resolve,
        clock: Clock = time.monotonic,
        tracing: OtelTracing | None = None,
    ) -> None:
        self._resolve = resolver
        self._tracing = tracing
        self._clock = clock
        self._pools: dict[Destination, _Pool] = {}
        self._default_tls: ssl.SSLContext | None = None

    async def post(
        self,
        url: URL,
        *,
        body: bytes,
        headers: Mapping[str, str],
        time_limit: float,
        limit: int,
        allow_private: bool,
        ca_file: str | None = None,
        secret_path: bool = False,
    ) -> Answer:
        """POST `body` to `url` (no redirects) within `time_limit` seconds; raises `Refused`,
        `NoAddress`, `OSError` (DNS), `SendError` or `TimeoutError`. With tracing, the request
        is a client span whose context goes out in `traceparent`; `secret_path` keeps the
        path out of the span (a Slack webhook's path is its secret)."""
        pool = self._pool(url, allow_private=allow_private, ca_file=ca_file)
        if self._tracing is None:
            return await _send(pool, url, body, headers, time_limit=time_limit, limit=limit)
        sent = dict(headers)
        attributes = _span_attributes(url, secret_path=secret_path)
        with self._tracing.client_span("POST", attributes, sent) as answered:
            answer = await _send(pool, url, body, sent, time_limit=time_limit, limit=limit)
            answered(answer.status)
        return answer

    async def addresses(
        self, url: URL, *, allow_private: bool, ca_file: str | None = None
    ) -> tuple[IPAddress, ...]:
        """The checked addresses requests to `url` connect to (looked up if due); raises as
        `post` does before sending."""
        pool = self._pool(url, allow_private=allow_private, ca_file=ca_file)
        async with pool.session():
            return pool.addresses

    async def aclose(self) -> None:
        """Close every pool's connections."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()

    def _pool(self, url: URL, *, allow_private: bool, ca_file: str | None) -> _Pool:
        scheme = url.scheme
        destination = Destination(
            scheme=scheme,
            host=url.raw_host or "",
            port=url.port or (443 if scheme == "https" else 80),
            allow_private=allow_private,
            ca_file=ca_file,
        )
        pool = self._pools.get(destination)
        if pool is None:
            if ca_file is not None:
                tls = tls_context(ca_file)
            else:
                self._default_tls = self._default_tls or tls_context()
                tls = self._default_tls
            pool = self._pools[destination] = _Pool(destination, tls, self._resolve, self._clock)
        return pool


async def _send(
    pool: _Pool,
    url: URL,
    body: bytes,
    headers: Mapping[str, str],
    *,
    time_limit: float,
    limit: int,
) -> Answer:
    async with pool.session() as session:
        try:
            async with session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=time_limit),
            ) as response:
                data = await _read(response.content, limit)
                return Answer(response.status, response.headers, data)
        except aiohttp.ClientError as exc:
            if isinstance(exc, TimeoutError):  # aiohttp's timeouts are both
                pool.expire()
                raise
            error = _send_error(exc)
            if not error.connected:
                pool.expire()
            raise error from None


def _span_attributes(url: URL, *, secret_path: bool) -> Attributes:
    """A client span's attributes for `url`, which leave out its user, password, query and
    fragment (a forward's query may hold a token) and, when `secret_path`, its path."""
    port = url.port or (443 if url.scheme == "https" else 80)
    shown = url.with_user(None).with_query(None).with_fragment(None)
    full = str(shown.with_path("/REDACTED") if secret_path else shown)
    return {
        "http.request.method": "POST",
        "server.address": url.host,
        "server.port": port,
        "url.full": full,
    }


async def _read(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to `limit` bytes of a body; reading a short answer to its end keeps the connection."""
    data = bytearray()
    while len(data) < limit:
        chunk = await stream.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _send_error(exc: aiohttp.ClientError) -> SendError:
    """The aiohttp error as the kind httpx named it, with the OS or TLS reason only."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return SendError("ConnectError", str(exc.certificate_error), connected=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return SendError("ConnectError", str(exc.os_error), connected=False)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return SendError("RemoteProtocolError", "the server closed the connection", connected=True)
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return SendError("RemoteProtocolError", exc.__class__.__name__, connected=True)
    if isinstance(exc, aiohttp.ClientOSError):
        return SendError("ReadError", str(exc), connected=True)
    return SendError(type(exc).__name__, "", connected=True)
