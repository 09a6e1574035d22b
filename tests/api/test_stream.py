"""`GET /admin/stream` in process, on both databases: new events and delivery changes arrive as
server-sent events, old ones do not (unless asked), keep-alives, resuming, auth and parameters,
and the stream's end when the client goes or the server stops.

httpx's ASGI transport returns a response only once the app has finished, so an endless stream
is read here with a small ASGI driver: the app runs as a task, its messages go to a queue.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, cast

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message

from service.clock import FakeClock
from service.dispatch.worker import WorkerConfig
from service.http.admin.stream import (
    LiveStream,
    decode_position,
    encode_position,
    server_stopping,
)
from service.routing import Subscription
from service.services import Services
from service.store import feed
from service.store.db import StoreUnavailable
from service.store.feed import ORIGIN, Follower
from tests.helpers import ADMIN_TOKEN, AUTH, make_settings, post_webhook, started_app, w3_body

WAIT = 10.0
T0 = datetime(2025, 11, 8, 12, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Sse:
    """One message of the stream (comments and `retry` are not messages)."""

    event: str
    data: dict[str, Any]
    id: str | None


@dataclass
class StreamClient:
    """One streaming request to the app: its status, and the body as it arrives."""

    status: int
    headers: dict[str, str]
    _messages: asyncio.Queue[Message]
    buffer: bytes = b""
    ended: bool = False

    async def _frame(self) -> str | None:
        """The next whole frame (message or comment), or None once the body has ended."""
        while b"\n\n" not in self.buffer:
            if self.ended:
                return None
            message = await self._messages.get()
            self.buffer += message.get("body", b"")
            self.ended = not message.get("more_body", False)
        frame, self.buffer = self.buffer.split(b"\n\n", 1)
        return frame.decode()

    async def next(self, within: float = WAIT) -> Sse | None:
        """The next message, or None once the body has ended."""
        async with asyncio.timeout(within):
            while (frame := await self._frame()) is not None:
                parsed = self._parse(frame)
                if parsed is not None:
                    return parsed
            return None

    async def next_of(self, kind: str, within: float = WAIT) -> Sse:
        """The next message of `kind`, skipping others."""
        async with asyncio.timeout(within):
            while True:
                message = await self.next()
                assert message is not None, "the stream ended"
                if message.event == kind:
                    return message

    async def comment(self, text: str, within: float = WAIT) -> None:
        """Wait for the comment `: text`."""
        async with asyncio.timeout(within):
            while (frame := await self._frame()) != f": {text}":
                assert frame is not None, "the stream ended"

    def _parse(self, frame: str) -> Sse | None:
        fields: dict[str, str] = {}
        for line in frame.split("\n"):
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" not in fields:
            return None
        return Sse(fields.get("event", "message"), orjson.loads(fields["data"]), fields.get("id"))


@asynccontextmanager
async def streaming(
    app: ASGIApp, query: str = "", headers: dict[str, str] | None = None
) -> AsyncIterator[StreamClient]:
    """GET /admin/stream?`query` as a running ASGI call; on exit the client disconnects, and the
    call must then end within a second (nothing of it left running)."""
    sent = {"authorization": f"Bearer {ADMIN_TOKEN}"} | (headers or {})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/admin/stream",
        "raw_path": b"/admin/stream",
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in sent.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("receiver", 80),
    }
    gone = asyncio.Event()
    requested = False
    messages: asyncio.Queue[Message] = asyncio.Queue()

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def call() -> None:
        await app(scope, receive, messages.put)

    task = asyncio.create_task(call())
    try:
        async with asyncio.timeout(WAIT):
            start = await messages.get()
        response = {k.decode(): v.decode() for k, v in start["headers"]}
        yield StreamClient(start["status"], response, messages)
    finally:
        gone.set()
        async with asyncio.timeout(1.0):
            await task


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def app(engine: AsyncEngine, db_url: str, clock: FakeClock) -> AsyncIterator[ASGIApp]:
    async with started_app(make_settings(db_url), engine, clock=clock) as running:
        yield running


@asynccontextmanager
async def client_of(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        yield client


class TestEvents:
    async def test_event_stored_after_connecting_is_sent_and_older_ones_are_not(
        self, app: ASGIApp, clock: FakeClock
    ) -> None:
        """Only what is stored after the request started comes down the stream."""
        async with client_of(app) as client:
            await post_webhook(client, w3_body("training.started", "job-old"))
            async with streaming(app) as stream:
                assert stream.status == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                clock.advance(timedelta(seconds=1))
                posted = await post_webhook(client, w3_body("training.completed", "job-new"))
                message = await stream.next_of("event")
        assert message.data["id"] == posted.json()["eventId"]
        assert (message.data["type"], message.data["jobId"]) == ("training.completed", "job-new")
        assert message.data["receivedAt"] == "2025-11-08T12:00:01.000000Z"

    async def test_since_sends_what_was_stored_from_then_on_oldest_first(
        self, app: ASGIApp, clock: FakeClock
    ) -> None:
        """`?since=` first sends the events received at or after it, oldest first."""
        async with client_of(app) as client:
            for job in ("job-a", "job-b", "job-c"):
                clock.advance(timedelta(seconds=1))
                await post_webhook(client, w3_body("training.started", job))
        async with streaming(app, "since=2025-11-08T12:00:02Z") as stream:
            first, second = await stream.next_of("event"), await stream.next_of("event")
        assert [first.data["jobId"], second.data["jobId"]] == ["job-b", "job-c"]

    async def test_last_event_id_resumes_after_that_message(
        self, app: ASGIApp, clock: FakeClock
    ) -> None:
        """A reconnecting client sends the last id it got and misses nothing stored meanwhile."""
        async with client_of(app) as client:
            async with streaming(app) as stream:
                await post_webhook(client, w3_body("training.started", "job-1"))
                seen = await stream.next_of("event")
            clock.advance(timedelta(seconds=1))
            await post_webhook(client, w3_body("training.started", "job-2"))
            assert seen.id is not None
            async with streaming(app, headers={"last-event-id": seen.id}) as stream:
                again = await stream.next_of("event")
        assert again.data["jobId"] == "job-2"


async def test_delivery_changes_are_sent_until_the_outcome(
    engine: AsyncEngine, db_url: str
) -> None:
    """A delivery is sent as it changes (never `in_flight`), ending with `succeeded`."""
    settings = make_settings(db_url, run_worker=True)
    route = Subscription("log", "log", ("*",))
    worker = WorkerConfig(poll_seconds=0.05)
    async with (
        started_app(settings, engine, routes=(route,), worker=worker) as app,
        client_of(app) as client,
        streaming(app) as stream,
    ):
        event_id = (await post_webhook(client, w3_body())).json()["eventId"]
        statuses: list[str] = []
        while not statuses or statuses[-1] != "succeeded":
            message = await stream.next_of("delivery")
            assert message.data["eventId"] == event_id
            statuses.append(message.data["status"])
    assert "in_flight" not in statuses
    assert message.data["route"] == "log"
    assert message.data["attempts"] == 1


class TestKeepAlive:
    async def test_heartbeat_comment_when_idle(self, app: ASGIApp) -> None:
        """With nothing to send, `: keep-alive` comes every `heartbeat` seconds."""
        async with streaming(app, "heartbeat=0.1") as stream:
            started = asyncio.get_running_loop().time()
            await stream.comment("keep-alive")
            await stream.comment("keep-alive")
            elapsed = asyncio.get_running_loop().time() - started
        assert elapsed < 2.0

    async def test_first_frame_sets_the_reconnect_delay(self, app: ASGIApp) -> None:
        """EventSource clients are told to wait 2 s before reconnecting."""
        async with streaming(app) as stream:
            assert await stream._frame() == "retry: 2000"


async def test_a_read_only_token_may_follow(engine: AsyncEngine, db_url: str) -> None:
    """The stream is read scope: a `name:read:TOKEN` entry opens it."""
    settings = make_settings(
        db_url, admin_tokens=[ADMIN_TOKEN, "watcher:read:read-only-token-0123"]
    )
    headers = {"authorization": "Bearer read-only-token-0123"}
    async with started_app(settings, engine) as app, streaming(app, headers=headers) as stream:
        assert stream.status == 200


@dataclass
class FailingStore:
    """A `Services` stand-in whose database cannot be read."""

    db: FailingStore | None = None

    async def read(self, work: object) -> None:
        raise StoreUnavailable("database is locked")


async def test_store_failure_mid_stream_ends_it_with_an_error_message() -> None:
    """The stream cannot answer 503 once started: one `error` message in the API's error shape,
    then the end (the client reconnects)."""
    store = FailingStore()
    store.db = store
    live = LiveStream(
        cast(Services, store), Follower(feed.EVENTS, ORIGIN), Follower(feed.DELIVERIES, ORIGIN)
    )
    frames = [frame async for frame in live.frames(asyncio.Event())]
    assert frames[0] == b"retry: 2000\n\n"
    event, data = frames[1].decode().strip().split("\n")
    assert event == "event: error"
    error = orjson.loads(data.removeprefix("data: "))["error"]
    assert (error["code"], error["message"]) == (
        "STORAGE_UNAVAILABLE",
        "storage unavailable: database is locked",
    )
    assert len(frames) == 2


class TestRefused:
    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({}, id="none"),
            pytest.param({"Authorization": "Bearer wrong"}, id="wrong"),
        ],
    )
    async def test_unauthenticated_is_401(self, app: ASGIApp, headers: dict[str, str]) -> None:
        """The stream needs an admin token like every admin endpoint."""
        async with client_of(app) as client:
            response = await client.get("/admin/stream", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"

    @pytest.mark.parametrize(
        ("query", "headers", "parameter"),
        [
            pytest.param("heartbeat=0", {}, "heartbeat", id="heartbeat-zero"),
            pytest.param("heartbeat=soon", {}, "heartbeat", id="heartbeat-text"),
            pytest.param("heartbeat=nan", {}, "heartbeat", id="heartbeat-nan"),
            pytest.param("since=yesterday", {}, "since", id="since"),
            pytest.param("limit=5", {}, "limit", id="unknown"),
            pytest.param("", {"Last-Event-ID": "garbage"}, "Last-Event-ID", id="last-event-id"),
        ],
    )
    async def test_bad_parameters_are_400(
        self, app: ASGIApp, query: str, headers: dict[str, str], parameter: str
    ) -> None:
        """Bad values are refused before the stream starts, naming the parameter."""
        async with client_of(app) as client:
            response = await client.get(f"/admin/stream?{query}", headers=AUTH | headers)
        assert response.status_code == 400
        assert response.json()["error"]["details"]["parameter"] == parameter


class TestEnding:
    @pytest.mark.parametrize("after", [0.0, 0.02, 0.3])
    async def test_disconnect_ends_the_request(self, app: ASGIApp, after: float) -> None:
        """When the client goes (during a poll or a pause), the call returns at once
        (`streaming` bounds it to 1 s) and leaves nothing running."""
        before = asyncio.all_tasks()
        async with streaming(app) as stream:
            assert stream.status == 200
            await asyncio.sleep(after)
        assert asyncio.all_tasks() <= before

    async def test_server_stopping_ends_the_stream(self, app: ASGIApp) -> None:
        """Once uvicorn has been told to stop, open streams finish by themselves, so they never
        hold up its shutdown."""
        server = FakeServer()
        previous = signal.signal(signal.SIGTERM, server.handle_exit)
        try:
            async with streaming(app) as stream:
                server.should_exit = True
                while await stream.next(within=2.0) is not None:
                    pass
                assert stream.ended
        finally:
            signal.signal(signal.SIGTERM, previous)


@dataclass
class FakeServer:
    """What `server_stopping` reads: uvicorn's `Server.handle_exit` installed as the handler."""

    should_exit: bool = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.should_exit = True


def test_server_stopping_reads_the_installed_handler() -> None:
    """False under any other handler; uvicorn's `should_exit` once its handler is installed."""
    server = FakeServer()
    assert server_stopping() is False
    previous = signal.signal(signal.SIGTERM, server.handle_exit)
    try:
        assert server_stopping() is False
        server.should_exit = True
        assert server_stopping() is True
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_position_round_trip() -> None:
    """An SSE id decodes to the positions it was made from; anything else to None."""
    events, deliveries = (T0, "evt_0123abcd"), (T0 + timedelta(seconds=1), "")
    assert decode_position(encode_position(events, deliveries)) == (events, deliveries)
    for garbage in ("", "x", "W10", encode_position(events, deliveries)[:-4]):
        assert decode_position(garbage) is None
