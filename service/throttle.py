"""Failed-authentication throttle: at most `limit` failures per client address in a sliding
`window`, then a wait. Pure (the time comes in) and bounded: it remembers at most `max_keys`
addresses, forgetting the least recently failing one first, and `limit` times per address.

It only counts failures and never decides a success: the right token is accepted whatever this
says, so a flood of wrong guesses cannot lock the operator out. One per app (per process).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from datetime import datetime, timedelta

LIMIT = 10
WINDOW = timedelta(minutes=1)
MAX_KEYS = 10_000


class Throttle:
    """Failures per key in a sliding window; `failed` says how long to wait once over."""

    def __init__(
        self, *, limit: int = LIMIT, window: timedelta = WINDOW, max_keys: int = MAX_KEYS
    ) -> None:
        self._limit = limit
        self._window = window.total_seconds()
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def failed(self, key: str, now: datetime) -> int | None:
        """Count a failure by `key` at `now`; None while within the limit, else the whole
        seconds to wait before a failure would be allowed again."""
        at = now.timestamp()
        times = self._failures.pop(key, None) or deque(maxlen=self._limit)
        while times and times[0] <= at - self._window:
            times.popleft()
        wait = None
        if len(times) >= self._limit:
            wait = max(1, math.ceil(times[0] + self._window - at))
        # A throttled failure counts too, so a client that keeps guessing stays throttled.
        times.append(at)
        self._failures[key] = times  # re-inserted last: the most recent
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)
        return wait

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._failures)
