"""Per-request costs on the webhook hot path, measured in process (no server, no database).

    python -m tests.perf.bench_hotpath

- The nesting-depth check on a large signed body: the byte scan in `webhooks/normalize.py`
  against the Python walk over the parsed value that it replaced (kept here as the reference),
  next to the cost of parsing the same body.
- One canonical log line through the production logging setup (JSON to /dev/null), with
  structlog's logger cache on (production) and off (what tests use).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from service.logs import configure_logging
from service.webhooks.normalize import MAX_DEPTH, nesting_exceeds


def walk_exceeds(value: object, limit: int) -> bool:
    """The previous check: an explicit-stack walk over every parsed value."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def per_call_us(work: Callable[[], object], seconds: float = 1.0) -> float:
    """Mean microseconds per call over about `seconds` of calls."""
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        work()
        calls += 1
    return elapsed / calls * 1e6


def large_body() -> bytes:
    """A ~290 kB signed-sized body: many small metric records, as a chatty sender might post."""
    points = [
        {"step": i, "loss": 1.0 / (i + 1), "tags": ["a", "b"], "note": "lr {warmup}"}
        for i in range(3200)
    ]
    return orjson.dumps({"event": "training.completed", "data": {"jobId": "j", "points": points}})


def bench_depth() -> None:
    body = large_body()
    value = orjson.loads(body)
    print(f"nesting check on a {len(body) / 1000:.0f} kB body (limit {MAX_DEPTH}):")
    rows: dict[str, Callable[[], object]] = {
        "parse (orjson)": lambda: orjson.loads(body),
        "walk (before)": lambda: walk_exceeds(value, MAX_DEPTH),
        "byte scan (now)": lambda: nesting_exceeds(body, MAX_DEPTH),
    }
    for label, work in rows.items():
        print(f"  {label:<22} {per_call_us(work) / 1000:7.2f} ms")


def bench_log_line() -> None:
    fields = {
        "method": "POST",
        "path": "/webhooks/llmtune",
        "status": 200,
        "client": "203.0.113.9",
        "duration_ms": 3.1,
        "source": "webhook",
        "body_bytes": 412,
        "event_type": "training.completed",
        "job_id": "job-1",
        "verified": True,
        "event_id": "evt_0192c2d8a1b2c3d4e5f60718",
        "duplicate": False,
        "outcome": "stored",
        "ingest_ms": 2.4,
    }
    with open(os.devnull, "w") as devnull:
        real_stderr, sys.stderr = sys.stderr, devnull
        try:
            for cache in (True, False):
                configure_logging("info", "json", cache=cache)
                log = structlog.get_logger("service.request")

                def line(log: Any = log) -> None:
                    log.info("request", **fields)

                us = per_call_us(line)
                print(
                    f"  one request line, logger cache {'on ' if cache else 'off'}   {us:7.1f} µs"
                )
        finally:
            sys.stderr = real_stderr
            logging.getLogger().handlers.clear()


def main() -> None:
    """Run both measurements."""
    bench_depth()
    print("canonical log line, JSON to /dev/null:")
    bench_log_line()


if __name__ == "__main__":
    main()
