"""When a failed delivery is tried again, or that it is not. Pure: time and randomness come in.

The schedule is Svix's: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about a day), each
delay spread by up to ±20 % of jitter so a destination that comes back is not hit by every
waiting delivery in the same second. A destination's own `Retry-After` replaces the scheduled
delay (clamped to [1 s, 1 day]). A permanent failure, or an attempt budget spent, is `dead`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from service.delivery_status import DeliveryStatus
from service.handlers.base import Fail, Ok, Outcome, Retry

SCHEDULE_SECONDS: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.2
MIN_RETRY_AFTER_SECONDS = 1.0
MAX_DELAY_SECONDS = 86400.0
AttemptOutcome = Literal["ok", "retry", "fail", "dead"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What becomes of a delivery after an attempt: its status and, if retrying, when."""

    status: DeliveryStatus
    next_attempt_at: datetime | None = None


def delay_after(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    if retry_after is not None:
        return min(max(retry_after, MIN_RETRY_AFTER_SECONDS), MAX_DELAY_SECONDS)
    base = SCHEDULE_SECONDS[min(attempt, len(SCHEDULE_SECONDS) - 1)]
    return min(base * (1 + rng.uniform(-JITTER, JITTER)), MAX_DELAY_SECONDS)


def decide(
    outcome: Outcome, *, attempt: int, max_attempts: int, now: datetime, rng: random.Random
) -> Decision:
    """`succeeded`, `dead`, or `retrying` at a time from the schedule or the destination."""
    if isinstance(outcome, Ok):
        return Decision("succeeded")
    if isinstance(outcome, Fail) or attempt >= max_attempts:
        return Decision("dead")
    assert isinstance(outcome, Retry)  # noqa: S101 - the union has three members
    seconds = delay_after(attempt, outcome.after, rng)
    return Decision("retrying", now + timedelta(seconds=seconds))


def attempt_outcome(outcome: Outcome, decision: Decision) -> AttemptOutcome:
    """What an attempt is recorded as: `ok`, `retry` (another attempt is scheduled), `fail`
    (a permanent failure) or `dead` (a transient failure with no attempt left), so the last
    attempt of a dead delivery never reads as a retry."""
    if isinstance(outcome, Ok):
        return "ok"
    if isinstance(outcome, Fail):
        return "fail"
    return "dead" if decision.status == "dead" else "retry"
