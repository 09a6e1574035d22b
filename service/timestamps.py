"""`rfc3339(moment)`: the one way a time is written out, in UTC with a `Z`, to the microsecond
(our API, forwarded events, the follow-ups we emit) or to the millisecond or second where a wire
format or a person wants that. Pure; imports nothing of ours.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, overload

Digits = Literal[0, 3, 6]


@overload
def rfc3339(moment: datetime, *, digits: Digits = 6) -> str: ...


@overload
def rfc3339(moment: None, *, digits: Digits = 6) -> None: ...


@overload
def rfc3339(moment: datetime | None, *, digits: Digits = 6) -> str | None: ...


def rfc3339(moment: datetime | None, *, digits: Digits = 6) -> str | None:
    """`2025-11-08T14:22:31.000000Z` with `digits` of the second's fraction (cut, not rounded,
    as JavaScript's `toISOString()` does for 3); None stays None."""
    if moment is None:
        return None
    # Naive times are ours read back from SQLite, stored as UTC: not the machine's local time.
    utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    fraction = f".{utc.microsecond:06d}"[: digits + 1] if digits else ""
    return f"{utc:%Y-%m-%dT%H:%M:%S}{fraction}Z"
