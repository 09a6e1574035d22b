"""The failed-authentication throttle: a sliding window per key, a wait once over, bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.throttle import Throttle

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def failures(throttle: Throttle, key: str, seconds: list[float]) -> list[int | None]:
    """What `failed` answers for failures by `key` at T0 + each of `seconds`."""
    return [throttle.failed(key, T0 + timedelta(seconds=s)) for s in seconds]


class TestThrottle:
    @pytest.mark.parametrize(
        ("seconds", "expected"),
        [
            pytest.param([0] * 3, [None] * 3, id="under-the-limit"),
            pytest.param([0, 1, 2, 3], [None, None, None, 57], id="fourth-waits-for-the-first"),
            pytest.param([0, 1, 2, 30.5], [None, None, None, 30], id="wait-rounds-up"),
            pytest.param([0, 1, 2, 60], [None, None, None, None], id="first-slid-out"),
            pytest.param([0, 0, 0, 0, 0], [None, None, None, 60, 60], id="throttled-counts-too"),
            pytest.param([0, 0, 0, 59.9], [None, None, None, 1], id="at-least-one-second"),
        ],
    )
    def test_sliding_window(self, seconds: list[float], expected: list[int | None]) -> None:
        """Past `limit` failures within the window the answer is the whole seconds to wait."""
        throttle = Throttle(limit=3, window=timedelta(minutes=1))
        assert failures(throttle, "10.0.0.1", seconds) == expected

    def test_keys_are_counted_apart(self) -> None:
        """One address's failures do not throttle another."""
        throttle = Throttle(limit=2)
        assert failures(throttle, "a", [0, 0, 0]) == [None, None, 60]
        assert failures(throttle, "b", [0]) == [None]

    def test_memory_is_bounded(self) -> None:
        """Past `max_keys` the least recently failing address is forgotten first."""
        throttle = Throttle(limit=1, max_keys=2)
        failures(throttle, "a", [0])
        failures(throttle, "b", [1])
        failures(throttle, "a", [2])  # a fails again: b is now the oldest
        failures(throttle, "c", [3])
        assert len(throttle) == 2
        assert failures(throttle, "b", [4]) == [None]  # forgotten, so counted afresh
        assert failures(throttle, "c", [5]) == [58]
