"""Outbound client benchmark: the same signed webhook POST to a local keep-alive sink, by httpx,
by aiohttp, by the service's own outbound path (`service/handlers/outbound.py`: aiohttp plus the
address check and pinning) and by a bare asyncio loop (the ceiling), at 1 and 32 in flight.

    python -m tests.perf.bench_client [--requests N] [--in-flight 1,32]

The sink is `bench_dispatch`'s: a bare HTTP/1.1 server answering 204 at once, in a process of its
own. Each row gives POSTs/s, this process's CPU µs per POST, and the TCP connections the sink
accepted. Client and sink share the machine's cores, so the figures are a floor; compare rows of
one run, not runs on a busy machine. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from yarl import URL

from service.handlers.outbound import Outbound
from tests.perf.bench_dispatch import SINK_SECRET, Sink, sink
from tests.perf.poster import plain_post, signed

Post = Callable[[int], Awaitable[int]]  # delivery number -> HTTP status


async def _run(post: Post, count: int, in_flight: int) -> tuple[float, float]:
    """`count` posts, at most `in_flight` at once; (wall seconds, CPU seconds)."""
    numbers = iter(range(count))
    bad: list[int] = []

    async def lane() -> None:
        for number in numbers:
            status = await post(number)
            if not 200 <= status < 300:
                bad.append(status)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    wall, spent = time.perf_counter() - started, time.process_time() - cpu
    if bad:
        raise RuntimeError(f"{len(bad)} answers were not 2xx (first: {bad[0]})")
    return wall, spent


async def with_httpx(port: int, count: int, in_flight: int) -> tuple[float, float]:
    """httpx.AsyncClient, as the handlers used it (no redirects, no proxies from the env)."""
    url = f"http://127.0.0.1:{port}/hook"
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:

        async def post(number: int) -> int:
            headers, body = signed(SINK_SECRET, number, port)
            response = await client.post(url, content=body, headers=headers, timeout=10.0)
            return response.status_code

        await post(-1)  # connect before the clock starts
        return await _run(post, count, in_flight)


async def with_aiohttp(port: int, count: int, in_flight: int) -> tuple[float, float]:
    """A plain aiohttp.ClientSession."""
    url = URL(f"http://127.0.0.1:{port}/hook")
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with aiohttp.ClientSession() as session:

        async def post(number: int) -> int:
            headers, body = signed(SINK_SECRET, number, port)
            async with session.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as response:
                await response.read()
                return response.status

        await post(-1)
        return await _run(post, count, in_flight)


async def with_outbound(port: int, count: int, in_flight: int) -> tuple[float, float]:
    """The service's outbound path, as the `http` handler calls it."""
    url = URL(f"http://127.0.0.1:{port}/hook")
    outbound = Outbound()
    try:

        async def post(number: int) -> int:
            headers, body = signed(SINK_SECRET, number, port)
            answer = await outbound.post(
                url, body=body, headers=headers, time_limit=10.0, limit=2048, allow_private=True
            )
            return answer.status

        await post(-1)
        return await _run(post, count, in_flight)
    finally:
        await outbound.aclose()


async def with_plain(port: int, count: int, in_flight: int) -> tuple[float, float]:
    """The bare asyncio poster (the ceiling)."""
    return await plain_post(port, SINK_SECRET, count, in_flight)


CLIENTS = {
    "httpx": with_httpx,
    "aiohttp": with_aiohttp,
    "outbound": with_outbound,
    "plain": with_plain,
}


def row(name: str, the_sink: Sink, count: int, in_flight: int) -> float:
    """Run one client at one width; print its row and return its POSTs/s."""
    the_sink.take()
    the_sink.connections()
    wall, cpu = asyncio.run(CLIENTS[name](the_sink.port, count, in_flight))
    arrived = len(the_sink.take())
    connections = the_sink.connections()
    rate = count / wall
    print(
        f"  {name:<9} {in_flight:>4} {rate:9.0f} {cpu / count * 1e6:9.0f}"
        f" {connections:6} {arrived:>7}"
    )
    return rate


def main() -> None:
    """Parse arguments, start the sink, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="POSTs per row")
    parser.add_argument("--in-flight", default="1,32", help="widths to measure")
    args = parser.parse_args()
    if not 1 <= args.requests <= 200_000:
        parser.error("keep it bounded: --requests 1..200000")
    widths = [int(part) for part in args.in_flight.split(",") if part.strip()]
    print(f"{args.requests} signed POSTs per row to a local keep-alive sink (204)")
    print("  client    in-flight  POSTs/s  CPU µs/POST conns arrived")
    with sink() as the_sink:
        for width in widths:
            rates = {name: row(name, the_sink, args.requests, width) for name in CLIENTS}
            ceiling = rates["plain"]
            shares = ", ".join(
                f"{name} {rate / ceiling:.2f}" for name, rate in rates.items() if name != "plain"
            )
            print(f"    of the plain poster at {width} in flight: {shares}")


if __name__ == "__main__":
    main()
