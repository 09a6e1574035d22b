"""Oversized request heads on a real `serve` process: over MAX_HEADER_BYTES the app answers 431
HEADERS_TOO_LARGE (recorded as a rejection); far over it the server itself cuts the head off
instead of buffering it. Either way nothing is stored and the server keeps serving."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.server import HOST, WEBHOOK_PATH, Server, receiver_env, running_server
from tests.helpers import AUTH, SQLITE_ONLY, w3_body, w3_headers

pytestmark = pytest.mark.e2e

MAX_HEADER_BYTES = 16384


def raw_post(server: Server, pad_bytes: int) -> bytes:
    """POST a signed delivery with one `pad_bytes` header over a plain socket; what came back
    (empty when the server reset the connection while we were still sending)."""
    body = w3_body(job_id="job-huge-head")
    head = "".join(f"{name}: {value}\r\n" for name, value in w3_headers(body).items())
    request = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {HOST}\r\n{head}"
        f"Content-Length: {len(body)}\r\nX-Pad: ".encode()
        + b"p" * pad_bytes
        + b"\r\n\r\n"
        + body
    )
    answer = b""
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        try:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                answer += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed a connection that was still sending: refused unread
    return answer


@SQLITE_ONLY
async def test_oversized_heads_are_refused_and_nothing_is_stored(
    engine: AsyncEngine, db_url: str, tmp_path: Path
) -> None:
    """32 KiB of headers: the app's 431 in our shape, one rejection row. 1 MiB: the server's
    431 (or a reset, if it closed while we were sending). No event is stored."""
    async with engine.begin() as connection:  # the engine fixture leaves other tests' rows
        await connection.execute(sa.text("DELETE FROM webhook_rejections"))
    env = receiver_env(db_url) | {"MAX_HEADER_BYTES": str(MAX_HEADER_BYTES)}
    with running_server(tmp_path, env, "--no-init-env") as server:
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as client:
            body = w3_body()
            # 32 KiB: over MAX_HEADER_BYTES, under what the server buffers (48 KiB).
            padding = {f"X-Pad-{index}": "p" * 4096 for index in range(8)}
            refused = await client.post(
                WEBHOOK_PATH, content=body, headers=w3_headers(body) | padding
            )
            assert refused.status_code == 431
            assert refused.json()["error"]["code"] == "HEADERS_TOO_LARGE"

            answer = await asyncio.to_thread(raw_post, server, 1024 * 1024)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]

            assert (await client.get("/readyz")).status_code == 200
            events = (await client.get("/admin/events", headers=AUTH)).json()["items"]
            assert events == []
            async with asyncio.timeout(10):
                while True:
                    rows = (await client.get("/admin/rejections", headers=AUTH)).json()["items"]
                    if rows:
                        break
                    await asyncio.sleep(0.05)
            assert [(row["reason"], row["status"]) for row in rows] == [("headers_too_large", 431)]
