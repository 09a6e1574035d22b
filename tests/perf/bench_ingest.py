"""Ingest benchmark: a real `serve` process, signed W3 deliveries over loopback HTTP.

    python -m tests.perf.bench_ingest [--db sqlite|postgresql|both] [--requests N]
                                      [--concurrency C] [--log-level info]

Phases: N distinct events (each a new event, job and delivery row), then N/2 copies of one event
(the duplicate path). Prints throughput, latency percentiles and the server's peak RSS. The client
runs on the same machine and competes for its cores, so the numbers are a floor. Traffic goes to
127.0.0.1 only; the server is stopped by pid and any database it made is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.helpers import SECRET, w3_body, w3_headers
from tests.pgdb import temporary_database


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh database URL of `kind`, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        return
    with temporary_database("llmtune_bench") as url:
        yield url


@contextmanager
def server(db_url: str, log_level: str) -> Iterator[tuple[str, int]]:
    """A receiver process on a free port; yields (base URL, pid)."""
    port = _free_port()
    env = os.environ | {
        "DATABASE_URL": db_url,
        "WEBHOOK_SECRETS": SECRET,
        "ADMIN_TOKENS": "bench-admin-token-0123",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": log_level,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--no-init-env"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not become ready")
        yield base, process.pid
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s; reaped either way."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def blast(base: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """Post every body with `concurrency` in flight; return (seconds, per-request latencies)."""
    latencies: list[float] = []
    queue = list(reversed(bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                response = await client.post(
                    "/webhooks/llmtune", content=body, headers=w3_headers(body)
                )
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"unexpected {response.status_code}: {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def report(label: str, seconds: float, latencies: list[float], server_cpu: float) -> None:
    """One line of results. Server CPU per request is the steadiest figure on a shared machine:
    the client's own share of the cores does not change it."""
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"  {label:<10} {len(latencies):>6} req  {len(latencies) / seconds:8.0f} req/s  "
        f"p50 {cuts[49] * 1000:6.1f} ms  p95 {cuts[94] * 1000:6.1f} ms  "
        f"p99 {cuts[98] * 1000:6.1f} ms  server CPU {server_cpu / len(latencies) * 1e6:5.0f} µs/req"
    )


def measured(
    pid: int, base: str, bodies: list[bytes], concurrency: int
) -> tuple[float, float, list[float]]:
    """One phase: its wall seconds, the server's CPU seconds, and each request's latency."""
    before = cpu_seconds(pid)
    seconds, latencies = asyncio.run(blast(base, bodies, concurrency))
    return seconds, cpu_seconds(pid) - before, latencies


def run(kind: str, requests: int, concurrency: int, log_level: str) -> None:
    """Both phases against one database kind."""
    run_id = uuid.uuid4().hex[:8]
    distinct = [w3_body("training.completed", f"job-{run_id}-{i}") for i in range(requests)]
    same = [w3_body("training.completed", f"job-{run_id}-dup")] * (requests // 2)
    with database(kind) as db_url, server(db_url, log_level) as (base, pid):
        print(f"{kind}: {requests} requests, concurrency {concurrency}, log level {log_level}")
        asyncio.run(blast(base, distinct[:50], concurrency))  # warm-up, not reported
        for label, bodies in (("distinct", distinct[50:]), ("duplicate", same)):
            seconds, server_cpu, latencies = measured(pid, base, bodies, concurrency)
            report(label, seconds, latencies, server_cpu)
        print(f"  server peak RSS {peak_rss_mib(pid):.0f} MiB")


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for kind in kinds:
        run(kind, args.requests, args.concurrency, args.log_level)


if __name__ == "__main__":
    main()
