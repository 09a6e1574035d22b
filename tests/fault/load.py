"""A small, bounded load generator with a client-side ledger, and the ledger check.

`Load` posts distinct signed W3 events (each `(type, jobId)` is one dedup key) to one or more
receivers (round-robin), at a fixed concurrency, and records every request: what was sent, the
status, the answer's `eventId` and `duplicate`, the error shape of a refusal, or the exception
that ended it. Events come in chains: a chain's events are sent one after the other, each only
once the previous one was acknowledged (a job's lifecycle, in order); a single event is a chain
of one. `ledger.check` then compares the records with the `events` table.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tests.helpers import w3_body, w3_headers

LIFECYCLE = ("training.started", "training.completed", "model.deployed")
ERROR_KEYS = frozenset({"message", "code", "details"})
HANGS = frozenset({"ReadTimeout", "WriteTimeout", "PoolTimeout"})


@dataclass(frozen=True, slots=True)
class Event:
    """One distinct delivery: its type, job and signed body."""

    type: str
    job_id: str
    body: bytes

    @property
    def key(self) -> tuple[str, str]:
        """What makes it distinct (its dedup key is `sem:<type>:<jobId>`)."""
        return (self.type, self.job_id)


def make_event(event_type: str, job_id: str) -> Event:
    """A W3 `event_type` for `job_id` (a deployment is keyed by its own `deploymentId`)."""
    extra = {"deploymentId": f"dep-{job_id}"} if event_type == "model.deployed" else {}
    return Event(event_type, job_id, w3_body(event_type, job_id, **extra))


def single_events(prefix: str, count: int, *, start: int = 0) -> list[list[Event]]:
    """`count` independent `training.completed` events, jobs `PREFIX-<n>`."""
    return [
        [make_event("training.completed", f"{prefix}-{n:06}")] for n in range(start, start + count)
    ]


def lifecycles(prefix: str, jobs: int) -> list[list[Event]]:
    """`jobs` chains started → completed → deployed, jobs `PREFIX-<n>`."""
    return [[make_event(kind, f"{prefix}-{n:06}") for kind in LIFECYCLE] for n in range(jobs)]


@dataclass(frozen=True, slots=True)
class Record:
    """One request as the client saw it."""

    event: Event
    url: str
    started: float  # time.monotonic()
    finished: float
    status: int | None = None
    event_id: str | None = None
    duplicate: bool | None = None
    code: str | None = None  # error.code of a refusal
    retry_after: str | None = None
    error_shape: bool = False  # a refusal had {"error": {"message", "code", "details"}}
    error: str | None = None  # the exception that ended the request, "Type(RootCause)"

    @property
    def ok(self) -> bool:
        """Acknowledged (2xx)."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def unconnected(self) -> bool:
        """No connection was made (refused, reset in the listen backlog, timed out): nothing
        of the request reached the server's application."""
        return self.error is not None and self.error.startswith("Connect")

    @property
    def refused(self) -> bool:
        """The connection was refused: nothing listened."""
        return self.unconnected and "ConnectionRefusedError" in (self.error or "")

    @property
    def hung(self) -> bool:
        """No answer within the client's timeout (10 s): the server hangs."""
        return self.error is not None and self.error.split("(")[0] in HANGS

    @property
    def dropped(self) -> bool:
        """Connected and sent, then the connection ended without an answer (reset, closed,
        timed out)."""
        return self.error is not None and not self.unconnected


def _root(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    return exc


def describe(exc: BaseException) -> str:
    """`HttpxType(RootCauseType)`, e.g. `ConnectError(ConnectionRefusedError)`."""
    root = _root(exc)
    if root is exc:
        return type(exc).__name__
    return f"{type(exc).__name__}({type(root).__name__})"


def _answer_fields(response: httpx.Response) -> dict[str, Any]:
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        document = None
    fields: dict[str, Any] = {"status": response.status_code}
    if response.is_success and isinstance(document, dict):
        fields["event_id"] = document.get("eventId")
        fields["duplicate"] = document.get("duplicate")
    elif isinstance(document, dict) and isinstance(document.get("error"), dict):
        error: dict[str, Any] = document["error"]
        fields["code"] = error.get("code")
        fields["error_shape"] = error.keys() >= ERROR_KEYS
    fields["retry_after"] = response.headers.get("retry-after")
    return fields


@dataclass(slots=True)
class Load:
    """Post every chain's events to `urls` (round-robin) with `concurrency` chains at a time.

    `pace` is the pause of each sender between two requests (bounds the rate). `keepalive=False`
    opens a new connection per request, so a connection error names that request alone.
    `stop()` ends the run after the requests in progress; chains not started are not sent.
    """

    urls: Sequence[str]
    chains: Sequence[Sequence[Event]]
    concurrency: int = 16
    pace: float = 0.0
    keepalive: bool = True
    timeout: float = 10.0
    records: list[Record] = field(default_factory=list)
    _next_chain: int = field(default=0, init=False)
    _next_url: int = field(default=0, init=False)
    _stopping: bool = field(default=False, init=False)

    @property
    def acked(self) -> int:
        """Acknowledged requests so far."""
        return sum(record.ok for record in self.records)

    def acked_at_least(self, count: int) -> Callable[[], bool]:
        """A condition: `count` requests acknowledged."""
        return lambda: self.acked >= count

    def stop(self) -> None:
        """Let the requests in progress finish, start no more."""
        self._stopping = True

    async def run(self) -> list[Record]:
        """Send until every chain is done or `stop()`; the ledger."""
        await asyncio.gather(*(self._sender() for _ in range(self.concurrency)))
        return self.records

    async def _sender(self) -> None:
        # A client (one connection) per sender: one shared pool of many connections costs the
        # client more CPU than the server spends on each request.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=int(self.keepalive))
        async with httpx.AsyncClient(
            timeout=self.timeout, limits=limits, trust_env=False
        ) as client:
            await self._send_chains(client)

    async def _send_chains(self, client: httpx.AsyncClient) -> None:
        while not self._stopping and self._next_chain < len(self.chains):
            chain = self.chains[self._next_chain]
            self._next_chain += 1
            for event in chain:
                if self._stopping:
                    return
                record = await self._post(client, event)
                self.records.append(record)
                if self.pace:
                    await asyncio.sleep(self.pace)
                if not record.ok:
                    break  # the rest of this chain would arrive out of order

    async def _post(self, client: httpx.AsyncClient, event: Event) -> Record:
        url = self.urls[self._next_url % len(self.urls)]
        self._next_url += 1
        headers = w3_headers(event.body)
        if not self.keepalive:
            headers["Connection"] = "close"
        started = time.monotonic()
        try:
            response = await client.post(url, content=event.body, headers=headers)
        except httpx.TransportError as exc:
            return Record(event, url, started, time.monotonic(), error=describe(exc))
        return Record(event, url, started, time.monotonic(), **_answer_fields(response))


async def send_all(urls: Sequence[str], events: Iterable[Event], *, concurrency: int) -> Load:
    """Post each event once (the sender's retry of what was not acknowledged); the ledger."""
    load = Load(urls, [[event] for event in events], concurrency=concurrency)
    await load.run()
    return load


def outcomes(records: Iterable[Record]) -> str:
    """`status or error: count`, most common first, e.g. `200:310 ConnectError(...):40`."""
    counts = Counter(
        str(record.status) if record.error is None else record.error for record in records
    )
    return " ".join(f"{name}:{count}" for name, count in counts.most_common())
