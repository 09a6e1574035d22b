"""`rfc3339`: UTC, a Z, and the asked number of fraction digits, cut rather than rounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.timestamps import Digits, rfc3339

MOMENT = datetime(2025, 11, 8, 14, 22, 31, 987654, tzinfo=UTC)
PARIS = timezone(timedelta(hours=1))


class TestRfc3339:
    @pytest.mark.parametrize(
        ("moment", "digits", "text"),
        [
            pytest.param(MOMENT, 6, "2025-11-08T14:22:31.987654Z", id="micro"),
            pytest.param(MOMENT, 3, "2025-11-08T14:22:31.987Z", id="milli-cut-not-rounded"),
            pytest.param(MOMENT, 0, "2025-11-08T14:22:31Z", id="seconds"),
            pytest.param(
                MOMENT.replace(microsecond=0), 6, "2025-11-08T14:22:31.000000Z", id="zero"
            ),
            pytest.param(MOMENT.replace(microsecond=5000), 3, "2025-11-08T14:22:31.005Z", id="pad"),
            pytest.param(MOMENT.astimezone(PARIS), 6, "2025-11-08T14:22:31.987654Z", id="to-utc"),
            pytest.param(MOMENT.replace(tzinfo=None), 0, "2025-11-08T14:22:31Z", id="naive-is-utc"),
        ],
    )
    def test_format(self, moment: datetime, digits: Digits, text: str) -> None:
        """The moment in UTC with `digits` of its fraction."""
        assert rfc3339(moment, digits=digits) == text

    def test_none_stays_none(self) -> None:
        """An absent time is written as absent, not as text."""
        assert rfc3339(None) is None

    def test_round_trips(self) -> None:
        """The microsecond form reads back as the same moment."""
        assert datetime.fromisoformat(rfc3339(MOMENT)) == MOMENT
