"""uvicorn's httptools protocol with a cap on what it buffers of a request head.

uvicorn bounds a request head only with h11 (`h11_max_incomplete_event_size`); its httptools
protocol buffers any number of header bytes, so an 8 MiB header or 100k headers were held in
memory before the app could refuse them. This one counts the bytes received while a head is
incomplete and answers 431 and closes past `head_limit`. The app's own 431 (MAX_HEADER_BYTES,
in our error shape, recorded for webhooks) stays the normal answer: `serve` sets this limit
above it, so only grossly oversized heads are cut off here.
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Room for the request line (a long admin query) and header formatting above MAX_HEADER_BYTES.
HEAD_OVERHEAD_BYTES = 16 * 1024
_BODY = orjson.dumps(
    {
        "error": {
            "message": "request headers are too large",
            "code": "HEADERS_TOO_LARGE",
            "details": None,
        }
    }
)


def head_limit(max_header_bytes: int) -> int:
    """What the server buffers of one request head: twice the app's header cap plus room for
    the request line, so the app sees (and answers) anything up to well past its own cap."""
    return 2 * max_header_bytes + HEAD_OVERHEAD_BYTES


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that refuses a request head over `config.h11_max_incomplete_event_size`
    bytes (the knob uvicorn's h11 protocol uses for the same purpose)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Counted from the first byte of each request until its headers are complete; a
        # pipelined request sharing a chunk with the previous one goes uncounted once.
        self._head_bytes = 0
        self._head_complete = False
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._head_complete:
            self._head_bytes += len(data)
            limit = self.config.h11_max_incomplete_event_size
            if limit is not None and self._head_bytes > limit:
                self._refuse_head()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._head_complete = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_complete = False
        self._head_bytes = 0
        super().on_message_complete()

    def _refuse_head(self) -> None:
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
        )
        self.transport.close()
