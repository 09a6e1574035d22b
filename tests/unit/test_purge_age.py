"""`purge --older-than`: the age parser, and the line the command always ends with."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from service.commands.purge import Cutoffs, Tally, cutoffs, parse_age, summary


class TestParseAge:
    @pytest.mark.parametrize(
        ("text", "age"),
        [
            pytest.param("90d", timedelta(days=90), id="days"),
            pytest.param("12h", timedelta(hours=12), id="hours"),
            pytest.param("30m", timedelta(minutes=30), id="minutes"),
            pytest.param("1m", timedelta(minutes=1), id="smallest"),
            pytest.param("007d", timedelta(days=7), id="leading-zeros"),
            pytest.param("36500d", timedelta(days=36_500), id="largest-days"),
            pytest.param("876000h", timedelta(days=36_500), id="largest-hours"),
        ],
    )
    def test_accepted(self, text: str, age: timedelta) -> None:
        """A whole number and one unit letter, d, h or m, is that many days, hours, minutes."""
        assert parse_age(text) == age

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            pytest.param("0d", "must be more than zero: '0d'", id="zero"),
            pytest.param("000h", "must be more than zero: '000h'", id="zeros"),
            pytest.param("36501d", "at most 36500d: '36501d'", id="too-old"),
            pytest.param("9" * 40 + "m", "at most 36500d: ", id="overflow"),
        ],
    )
    def test_out_of_range(self, text: str, reason: str) -> None:
        """Zero would purge everything just received; beyond 100 years is no time at all."""
        with pytest.raises(ValueError, match="^" + re.escape(reason)):
            parse_age(text)

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("-5d", id="negative"),
            pytest.param("+5d", id="plus-sign"),
            pytest.param("", id="empty"),
            pytest.param("90", id="no-unit"),
            pytest.param("d", id="no-number"),
            pytest.param("90M", id="upper-case"),
            pytest.param("3w", id="weeks"),
            pytest.param("1.5d", id="fraction"),
            pytest.param("1_000d", id="underscore"),
            pytest.param(" 90d", id="space"),
            pytest.param("90d ", id="trailing-space"),
            pytest.param("90d\n", id="newline"),
            pytest.param("1d12h", id="two-units"),
            pytest.param("\u0669\u0660d", id="non-ascii-digits"),  # Arabic-Indic 90
            pytest.param("2025-01-01", id="a-date"),
        ],
    )
    def test_garbage(self, text: str) -> None:
        """Anything but digits then one of d, h, m is refused, naming the accepted forms."""
        with pytest.raises(ValueError, match=r"^not a whole number of days, hours or minutes") as e:
            parse_age(text)
        assert str(e.value).endswith(repr(text))

    def test_long_garbage_is_cut_in_the_message(self) -> None:
        """The message quotes at most 64 characters of what was typed (it is one line)."""
        with pytest.raises(ValueError, match="not a whole number") as e:
            parse_age("x" * 1000)
        assert str(e.value).endswith(repr("x" * 64))


class TestSummary:
    CUTS = Cutoffs(
        now=datetime(2026, 11, 30, 2, 15, 7, 250, tzinfo=UTC),
        events=datetime(2026, 9, 1, 2, 15, 7, tzinfo=UTC),
        dedup=datetime(2025, 10, 26, 2, 15, 7, tzinfo=UTC),
    )

    def test_a_purge(self) -> None:
        """The final line names the counts, the cutoffs as RFC 3339 and the time taken."""
        tally = Tally(deleted=1200, deliveries=2400, kept=3, tombstones=7)
        assert summary(tally, cuts=self.CUTS, seconds=2.345, dry_run=False) == (
            "purge: deleted 1200 events (2400 deliveries) older than 2026-09-01T02:15:07Z "
            "in 2.3 s; kept 3 with unfinished deliveries; deleted 7 dedup keys of events older "
            "than 2025-10-26T02:15:07Z"
        )

    def test_a_dry_run(self) -> None:
        """A dry run says what it would do, with the same counts."""
        tally = Tally(deleted=0, deliveries=0, kept=0)
        assert summary(tally, cuts=self.CUTS, seconds=0.04, dry_run=True) == (
            "purge: would delete 0 events (0 deliveries) older than 2026-09-01T02:15:07Z "
            "in 0.0 s; would keep 0 with unfinished deliveries; would delete 0 dedup keys of "
            "events older than 2025-10-26T02:15:07Z"
        )


class TestCutoffs:
    NOW = datetime(2026, 11, 30, 2, 15, 7, 987_654, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("age", "days", "events", "dedup"),
        [
            pytest.param(
                timedelta(days=90),
                400,
                datetime(2026, 9, 1, 2, 15, 7, tzinfo=UTC),
                datetime(2025, 10, 26, 2, 15, 7, tzinfo=UTC),
                id="defaults",
            ),
            pytest.param(
                timedelta(minutes=5),
                1,
                datetime(2026, 11, 30, 2, 10, 7, tzinfo=UTC),
                datetime(2026, 11, 29, 2, 15, 7, tzinfo=UTC),
                id="shortest-retention",
            ),
            pytest.param(
                timedelta(days=36_500),
                36_500,
                datetime(1926, 12, 25, 2, 15, 7, tzinfo=UTC),
                datetime(1926, 12, 25, 2, 15, 7, tzinfo=UTC),
                id="longest",
            ),
        ],
    )
    def test_cutoffs(self, age: timedelta, days: int, events: datetime, dedup: datetime) -> None:
        """Both lines are drawn back from now in whole seconds; `now` itself is kept exact."""
        assert cutoffs(self.NOW, age=age, dedup_days=days) == Cutoffs(self.NOW, events, dedup)
