"""The ceiling for an outbound client: signed webhook POSTs written by a bare asyncio loop on
kept-alive sockets, no HTTP library. Shared by `bench_client` and `bench_dispatch`, so both can
say how far a real client (or the whole worker) is from it on the same sink in the same run."""

from __future__ import annotations

import asyncio
import math
import time

import orjson

from service.handlers.signing import sign

USER_AGENT = "llmtune-receiver-bench"


def signed(secret: str, number: int, port: int) -> tuple[dict[str, str], bytes]:
    """The headers and body of delivery `number`, signed as the `http` handler signs."""
    body = orjson.dumps({"id": f"evt_bench_{number}", "type": "training.completed", "n": number})
    msg_id = f"dlv_bench_{number}"
    timestamp = math.floor(time.time())
    headers = {
        "host": f"127.0.0.1:{port}",
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
    return headers, body


def _wire(headers: dict[str, str], body: bytes) -> bytes:
    lines = [b"POST /hook HTTP/1.1"]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in headers.items()]
    lines.append(f"content-length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _connection(
    port: int, secret: str, numbers: list[int], next_index: list[int], statuses: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while next_index[0] < len(numbers):
            number = numbers[next_index[0]]
            next_index[0] += 1
            writer.write(_wire(*signed(secret, number, port)))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    await reader.readexactly(int(value))
            statuses.append(status)
    finally:
        writer.close()
        await writer.wait_closed()


async def plain_post(port: int, secret: str, count: int, in_flight: int) -> tuple[float, float]:
    """POST `count` signed deliveries to 127.0.0.1:`port` over `in_flight` kept-alive sockets;
    (wall seconds, CPU seconds of this process). Raises if any answer was not 2xx."""
    statuses: list[int] = []
    next_index = [0]
    numbers = list(range(count))
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(
        *(_connection(port, secret, numbers, next_index, statuses) for _ in range(in_flight))
    )
    wall, spent = time.perf_counter() - started, time.process_time() - cpu
    if len(statuses) != count or any(not 200 <= status < 300 for status in statuses):
        raise RuntimeError("the plain poster got answers other than 2xx")
    return wall, spent
