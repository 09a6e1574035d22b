"""uvicorn's httptools protocol with a cap on the request head it buffers: the protocol is fed
bytes as a socket would feed it, through a recording transport."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from service.commands.bounded_http import BoundedHttpToolsProtocol, head_limit

LIMIT = 4096


class RecordingTransport(asyncio.Transport):
    """Keeps what the protocol writes, and whether it closed the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.wrote = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)
        self.wrote.set()

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def connected() -> tuple[BoundedHttpToolsProtocol, RecordingTransport]:
    config = Config(_ok, h11_max_incomplete_event_size=LIMIT, log_config=None, lifespan="off")
    protocol = BoundedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


def head(header_bytes: int) -> bytes:
    """A request line and one header, without the blank line that ends the head."""
    return b"GET / HTTP/1.1\r\nhost: x\r\nx-pad: " + b"p" * header_bytes + b"\r\n"


@pytest.mark.parametrize("chunk", [1024, 100_000], ids=["small-reads", "one-read"])
async def test_a_head_over_the_limit_is_refused_with_431(chunk: int) -> None:
    """Past the limit the protocol answers 431 in our error shape and closes, whether the
    bytes come in one read or many, before the head is even complete."""
    protocol, transport = connected()
    data = head(LIMIT * 4)
    for start in range(0, len(data), chunk):
        if transport.closed:
            break
        protocol.data_received(data[start : start + chunk])
    assert transport.closed
    assert transport.written.startswith(b"HTTP/1.1 431 ")
    assert b'"code":"HEADERS_TOO_LARGE"' in transport.written


async def test_a_head_under_the_limit_reaches_the_app() -> None:
    """A head within the limit is parsed and served as usual, and so are the next ones on the
    same connection: the count starts again per request (three heads add up to over it)."""
    protocol, transport = connected()
    for served in range(1, 4):
        protocol.data_received(head(LIMIT // 2) + b"\r\n")
        async with asyncio.timeout(10):  # a guard against hanging, not a measurement
            while transport.written.count(b"HTTP/1.1 204") < served and not transport.closed:
                transport.wrote.clear()
                await transport.wrote.wait()  # the app runs as a task of this loop
    assert not transport.closed
    assert transport.written.count(b"HTTP/1.1 204") == 3


def test_head_limit_leaves_room_above_the_apps_cap() -> None:
    """The server's cut-off sits well above MAX_HEADER_BYTES: the app answers first."""
    assert head_limit(65536) == 2 * 65536 + 16 * 1024
