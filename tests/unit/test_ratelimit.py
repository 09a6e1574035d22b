"""The per-route rate limiter on a fake timer: starts spaced evenly, no real sleeps."""

from __future__ import annotations

import asyncio

import pytest

from service.clock import FakeTimer
from service.dispatch.ratelimit import RateLimiter


@pytest.mark.parametrize(
    ("per_second", "starts", "expected"),
    [
        pytest.param(5.0, 4, [0.0, 0.2, 0.4, 0.6], id="five-per-second"),
        pytest.param(0.5, 3, [0.0, 2.0, 4.0], id="one-every-two-seconds"),
        pytest.param(1.0, 1, [0.0], id="first-start-is-free"),
    ],
)
async def test_starts_are_spaced_by_the_interval(
    per_second: float, starts: int, expected: list[float]
) -> None:
    """Back-to-back starts happen one interval apart, the first at once."""
    timer = FakeTimer()
    limiter = RateLimiter(per_second, timer=timer)
    started = []
    for _ in range(starts):
        await limiter.wait()
        started.append(timer.monotonic())
    assert started == pytest.approx(expected)


async def test_idle_time_is_not_saved_up() -> None:
    """After a quiet spell the next start is free, but the one after it waits a full interval
    (no burst of starts for the time nobody asked)."""
    timer = FakeTimer()
    limiter = RateLimiter(2.0, timer=timer)
    await limiter.wait()
    await timer.sleep(10.0)
    await limiter.wait()
    await limiter.wait()
    assert timer.slept == pytest.approx([10.0, 0.5])


async def test_concurrent_callers_queue_one_interval_apart() -> None:
    """Callers waiting at the same moment are let through one by one, an interval apart."""
    timer = FakeTimer()
    limiter = RateLimiter(4.0, timer=timer)
    started: list[float] = []

    async def start() -> None:
        await limiter.wait()
        started.append(timer.monotonic())

    await asyncio.gather(*(start() for _ in range(3)))
    assert started == pytest.approx([0.0, 0.25, 0.5])
