"""`GET /admin/stream`: new events and delivery changes, live, as server-sent events.

Read scope, Bearer token like every admin endpoint (an `AdminRoute`: unknown query parameters
are 400s as elsewhere). Rows are found by polling the database every `POLL_SECONDS` with a keyset
cursor per table (`service/store/feed.py`), so the stream sees what any process stored, and holds
no connection between polls. Each message:

    id: <position>        opaque; sent back as `Last-Event-ID`, the stream resumes after it
    event: event          data: the event as `GET /admin/events` lists it
    event: delivery       data: the delivery as `GET /admin/deliveries` lists it

A delivery is sent at each change the poll sees (`pending`, `retrying`, `succeeded`, `dead`);
`in_flight` is not sent, the outcome that follows it is. Nothing stored before the request is
sent, unless `?since=TIME` (RFC 3339) asks for what was stored or changed from then on, or a
`Last-Event-ID` header resumes. `: keep-alive` comments keep idle proxies from closing the
connection (`?heartbeat=SECONDS`, default 15). If the store fails mid-stream, one
`event: error` message in the API's error shape ends the stream; the client reconnects.

The stream ends when the client goes or the server is stopping, at its next pause (so never in
the middle of a database read); the one task it starts, to notice the client going, ends with
the request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import orjson
from pydantic import BeforeValidator, Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from service.events import parse_time
from service.http.admin import schemas
from service.http.admin.endpoint import AdminRoute, parsed_query
from service.http.admin.params import Query, Time, check
from service.http.errors import InvalidParameter, error_body
from service.http.numbers import parse_decimal
from service.ids import looks_like_id
from service.services import Services
from service.store import feed
from service.store.db import StoreUnavailable
from service.store.deliveries import StoredDelivery
from service.store.events import StoredEvent
from service.store.feed import Follower
from service.store.paging import SortKey

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
LOW, HIGH = 0.05, 300.0  # the heartbeat's range, in seconds
# Tells EventSource clients how long to wait before reconnecting (milliseconds).
RETRY_MS = 2000
NOT_SENT = frozenset({"in_flight"})


def server_stopping() -> bool:
    """True once the server (uvicorn) has been told to stop.

    uvicorn waits for open responses to finish before it runs the lifespan's shutdown, so a
    stream waiting for the lifespan would hold every SIGTERM for `timeout_graceful_shutdown`
    and then be cancelled. uvicorn takes SIGTERM with its `Server.handle_exit`, which sets
    `should_exit`: read that from the installed handler. Under any other server this is False
    and the stream ends when the server cancels it.
    """
    handler = signal.getsignal(signal.SIGTERM)
    return bool(getattr(getattr(handler, "__self__", None), "should_exit", False))


def encode_position(events: SortKey, deliveries: SortKey) -> str:
    """The opaque SSE id for a point in both feeds."""
    raw = orjson.dumps([[key[0].isoformat(), key[1]] for key in (events, deliveries)])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_position(text: str) -> tuple[SortKey, SortKey] | None:
    """The two positions inside an SSE id of ours, or None."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not (isinstance(value, list) and len(value) == 2):
        return None
    keys = [_sort_key(item) for item in value]
    return None if keys[0] is None or keys[1] is None else (keys[0], keys[1])


def _sort_key(item: object) -> SortKey | None:
    if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], str)):
        return None
    at = parse_time(item[0])
    # An id of ours, or "" (a position given as a bare time, before every id at it).
    if at is None or not (item[1] == "" or looks_like_id(item[1])):
        return None
    return at, item[1]


def _seconds(raw: str) -> float | None:
    seconds = parse_decimal(raw)
    return seconds if seconds is not None and LOW <= seconds <= HIGH else None


class StreamQuery(Query):
    """`GET /admin/stream`."""

    scope: ClassVar[str] = "stream"
    since: Time | None = Field(
        None, description="first send what was stored or changed at or after this time"
    )
    heartbeat: Annotated[
        float,
        Field(ge=LOW, le=HIGH),
        BeforeValidator(check(_seconds, f"must be a number of seconds from {LOW} to {HIGH:.0f}")),
    ] = Field(HEARTBEAT_SECONDS, description="seconds between keep-alive comments")


def _start(request: Request, query: StreamQuery) -> tuple[SortKey, SortKey] | None:
    """Where the stream starts: after `Last-Event-ID`, at `since`, or None (after the newest)."""
    last_id = request.headers.get("last-event-id")
    if last_id:
        resumed = decode_position(last_id)
        if resumed is None:
            raise InvalidParameter(
                "Last-Event-ID must be an id this stream sent",
                details={"parameter": "Last-Event-ID"},
            )
        return resumed
    since = query.since
    # An empty id sorts before every id, so rows stored exactly at `since` are included.
    return None if since is None else ((since, ""), (since, ""))


def _frame(kind: str, position: str, data: dict[str, Any]) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        position.encode(),
        kind.encode(),
        orjson.dumps(data),
    )


@dataclass
class LiveStream:
    """One client's stream: the two followers and how often to poll and keep alive."""

    svc: Services
    events: Follower[StoredEvent]
    deliveries: Follower[StoredDelivery]
    heartbeat: float = HEARTBEAT_SECONDS
    poll_seconds: float = POLL_SECONDS
    stopping: Callable[[], bool] = server_stopping

    async def frames(self, gone: asyncio.Event) -> AsyncIterator[bytes]:
        """The response body: messages as rows appear, keep-alives in between, until the client
        is `gone` or the server is stopping."""
        yield b"retry: %d\n\n" % RETRY_MS
        quiet_since = time.monotonic()
        while not (gone.is_set() or self.stopping()):
            try:
                chunk = await self._poll()
            except StoreUnavailable as exc:
                body = error_body("STORAGE_UNAVAILABLE", f"storage unavailable: {exc}")
                yield b"event: error\ndata: %s\n\n" % orjson.dumps(body)
                return
            idle = time.monotonic() - quiet_since
            if chunk or idle >= self.heartbeat:
                yield chunk or b": keep-alive\n\n"
                quiet_since, idle = time.monotonic(), 0.0
            if not (self.events.more or self.deliveries.more):
                pause = max(0.01, min(self.poll_seconds, self.heartbeat - idle))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await gone.wait()

    async def _poll(self) -> bytes:
        # One transaction per table: a retried read (dropped connection) repeats only its own
        # poll, which changed nothing when it failed.
        event_at, delivery_at = self.events.position, self.deliveries.position
        new_events = await self.svc.db.read(self.events.poll)
        changed = await self.svc.db.read(self.deliveries.poll)
        frames = []
        # Each message's id is the position up to and including it, so a client that resumes
        # from it gets every later message of this batch again, none earlier.
        for event in new_events:
            event_at = max(event_at, feed.EVENTS.key(event))
            frames.append(
                _frame(
                    "event", encode_position(event_at, delivery_at), schemas.event_summary(event)
                )
            )
        for delivery in changed:
            delivery_at = max(delivery_at, feed.DELIVERIES.key(delivery))
            if delivery.status not in NOT_SENT:
                position = encode_position(event_at, delivery_at)
                frames.append(_frame("delivery", position, schemas.delivery_view(delivery)))
        return b"".join(frames)


async def open_stream(
    session: AsyncSession, svc: Services, start: tuple[SortKey, SortKey] | None
) -> LiveStream:
    """Followers placed at `start` (or after the newest rows), what is behind them counted as
    already sent."""
    if start is None:
        start = (
            await feed.newest_key(session, feed.EVENTS),
            await feed.newest_key(session, feed.DELIVERIES),
        )
    events, deliveries = Follower(feed.EVENTS, start[0]), Follower(feed.DELIVERIES, start[1])
    await events.start(session)
    await deliveries.start(session)
    return LiveStream(svc, events, deliveries)


class EventStreamResponse(StreamingResponse):
    """Starlette's `StreamingResponse` for a `LiveStream`, except that a client going away ends
    the body at its next pause instead of cancelling it. A cancel can land inside a database
    read, where SQLAlchemy's aiosqlite adapter then races a forced close against a graceful one
    and leaves a close task that never finishes; here the disconnect only sets `gone`."""

    def __init__(self, live: LiveStream) -> None:
        self.gone = asyncio.Event()
        super().__init__(
            live.frames(self.gone),
            media_type="text/event-stream",
            # No caching, and no buffering by nginx-style proxies: each message goes out at once.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(self._watch(receive))
        try:
            await self.stream_response(send)
        except OSError:
            pass  # an ASGI 2.4 server refusing a send: the client is gone, the answer is over
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self, receive: Receive) -> None:
        await self.listen_for_disconnect(receive)
        self.gone.set()


async def stream(request: Request, svc: Services) -> Response:
    """New events and delivery changes as server-sent events (`text/event-stream`)."""
    query = parsed_query(request, StreamQuery)
    heartbeat = query.heartbeat
    start = _start(request, query)
    # Placed before the response starts, so a store that is down answers 503 like any read.
    live = await svc.db.read(lambda session: open_stream(session, svc, start))
    live.heartbeat = heartbeat
    return EventStreamResponse(live)


# GET: read scope, like every admin read (`endpoint.AdminRoute`).
ROUTES = [AdminRoute("/admin/stream", stream, query=StreamQuery)]
