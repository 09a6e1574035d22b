"""Real local servers that handlers deliver to: an HTTP sink that records every request and can
be told how to answer (fail, 429 with Retry-After, be slow), for Slack, HTTP forwards and any
handler that speaks HTTP. It is a real uvicorn server on 127.0.0.1, in the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True, slots=True)
class Reply:
    """How the sink answers one request."""

    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "text/plain"


@dataclass(frozen=True, slots=True)
class Received:
    """One request the sink got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HttpSink:
    """Records requests; answers from `by_path`, else the scripted replies in order, else
    with `default`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Reply] = []
        self.default = Reply()
        # A fixed answer for one path, whatever the script says (e.g. a broken destination).
        self.by_path: dict[str, Reply] = {}
        self.port = 0
        self._arrived = asyncio.Condition()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        async with self._arrived:
            self.received.append(
                Received(request.method, request.url.path, dict(request.headers), body)
            )
            self._arrived.notify_all()
        if request.url.path in self.by_path:
            reply = self.by_path[request.url.path]
        else:
            reply = self.script.pop(0) if self.script else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return Response(
            reply.body, reply.status, headers=reply.headers, media_type=reply.content_type
        )

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        """Wait until `count` requests have arrived (fail after `within` seconds)."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)


@contextlib.asynccontextmanager
async def http_sink() -> AsyncIterator[HttpSink]:
    """An `HttpSink` listening on a free port of 127.0.0.1 for the duration."""
    sink = HttpSink()
    app = Starlette(routes=[Route("/{path:path}", sink._endpoint, methods=["GET", "POST", "PUT"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sink.port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    # uvicorn.Server offers only a flag for "listening"; poll it.
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    try:
        yield sink
    finally:
        server.should_exit = True
        await task
        sock.close()
