"""Retry policy: the schedule, jitter bounds, Retry-After, and when a delivery is dead."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from service.dispatch.policy import (
    SCHEDULE_SECONDS,
    Decision,
    attempt_outcome,
    decide,
    delay_after,
)
from service.handlers.base import Fail, Ok, Outcome, Retry

NOW = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("outcome", "attempt", "max_attempts", "expected"),
    [
        pytest.param(Ok(), 1, 9, Decision("succeeded"), id="ok"),
        pytest.param(Ok(), 9, 9, Decision("succeeded"), id="ok-on-last-attempt"),
        pytest.param(Fail("400"), 1, 9, Decision("dead"), id="permanent"),
        pytest.param(Retry("500"), 9, 9, Decision("dead"), id="budget-spent"),
        pytest.param(Retry("500"), 1, 1, Decision("dead"), id="single-attempt-route"),
        pytest.param(
            Retry("429", after=30),
            3,
            9,
            Decision("retrying", NOW + timedelta(seconds=30)),
            id="retry-after",
        ),
        pytest.param(
            Retry("503", after=0),
            2,
            9,
            Decision("retrying", NOW + timedelta(seconds=1)),
            id="retry-after-floor",
        ),
        pytest.param(
            Retry("503", after=10**9),
            2,
            9,
            Decision("retrying", NOW + timedelta(days=1)),
            id="retry-after-cap",
        ),
    ],
)
def test_decide(outcome: Outcome, attempt: int, max_attempts: int, expected: Decision) -> None:
    """Each outcome and attempt count leads to exactly one status."""
    assert (
        decide(outcome, attempt=attempt, max_attempts=max_attempts, now=NOW, rng=random.Random(1))
        == expected
    )


@pytest.mark.parametrize(
    ("outcome", "attempt", "max_attempts", "recorded"),
    [
        pytest.param(Ok(), 1, 9, "ok", id="ok"),
        pytest.param(Retry("503"), 1, 9, "retry", id="retry-scheduled"),
        pytest.param(Retry("503"), 9, 9, "dead", id="last-attempt-spent"),
        pytest.param(Retry("503"), 1, 1, "dead", id="single-attempt-route"),
        pytest.param(Fail("400"), 1, 9, "fail", id="permanent"),
        pytest.param(Fail("400"), 9, 9, "fail", id="permanent-on-last-attempt"),
    ],
)
def test_attempt_outcome(outcome: Outcome, attempt: int, max_attempts: int, recorded: str) -> None:
    """An attempt is recorded as what came of it: a transient failure with no attempt left is
    `dead`, never `retry`."""
    decision = decide(
        outcome, attempt=attempt, max_attempts=max_attempts, now=NOW, rng=random.Random(1)
    )
    assert attempt_outcome(outcome, decision) == recorded


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [
        (1, 4, 6),  # 5 s
        (2, 240, 360),  # 5 min
        (3, 1440, 2160),  # 30 min
        (4, 5760, 8640),  # 2 h
        (5, 14400, 21600),  # 5 h
        (6, 28800, 43200),  # 10 h
        (7, 28800, 43200),  # 10 h, the last step repeats
        (11, 28800, 43200),
    ],
)
def test_scheduled_delays_stay_within_jitter(attempt: int, low: float, high: float) -> None:
    """Without Retry-After, the delay is the schedule's step ±20 %, and the jitter is used."""
    delays = {delay_after(attempt, None, random.Random(seed)) for seed in range(50)}
    assert low <= min(delays) <= max(delays) <= high
    assert len(delays) > 1


def test_first_retry_comes_within_about_five_seconds() -> None:
    """After the first failure the next try is due in about 5 s (the settled schedule)."""
    delays = [delay_after(1, None, random.Random(seed)) for seed in range(100)]
    assert 4 <= min(delays) <= max(delays) <= 6


def test_schedule_spans_about_a_day() -> None:
    """Eight retries take a little over a day (27.6 h), like Svix's schedule."""
    assert 24 * 3600 < sum(SCHEDULE_SECONDS) < 28 * 3600
