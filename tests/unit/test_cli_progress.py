"""The replay command's progress line: redrawn in place on a terminal, one summary line off it."""

from __future__ import annotations

import io

import pytest

from service.commands.progress import Progress, bar

CLEAR = "\r\x1b[K"


class FakeTimer:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestProgress:
    def test_off_a_terminal_only_the_summary_is_written(self) -> None:
        """Without a terminal, updates write nothing and `finish` writes one plain line."""
        out, timer = io.StringIO(), FakeTimer()
        progress = Progress("replay", out, live=False, clock=timer)
        progress.update("200 events")
        progress.update("400 events")
        timer.now += 2.5
        progress.finish("400 events, 400 deliveries")
        assert out.getvalue() == "replay: 400 events, 400 deliveries in 2.5 s\n"

    def test_on_a_terminal_redraws_in_place_at_most_every_interval(self) -> None:
        """Updates redraw the line, skipping those sooner than `every` after the last one."""
        out, timer = io.StringIO(), FakeTimer()
        progress = Progress("replay", out, live=True, width=80, every=0.2, clock=timer)
        progress.update("200 events")
        timer.now += 0.1
        progress.update("400 events")  # too soon: skipped
        timer.now += 0.2
        progress.update("600 events")
        progress.finish("600 events, 600 deliveries")
        assert out.getvalue() == (
            f"{CLEAR}replay: 200 events{CLEAR}replay: 600 events"
            f"{CLEAR}replay: 600 events, 600 deliveries in 0.3 s\n"
        )
        assert "\n" not in out.getvalue()[:-1]

    def test_a_redraw_is_cut_to_the_terminal_width(self) -> None:
        """A line as wide as the terminal or wider is cut, so that it never wraps."""
        out = io.StringIO()
        progress = Progress("replay", out, live=True, width=20, clock=FakeTimer())
        progress.update("x" * 50)
        assert out.getvalue() == CLEAR + ("replay: " + "x" * 50)[:19]

    def test_abandon_ends_a_drawn_line_only(self) -> None:
        """`abandon` moves past a drawn line so an error starts on its own; else writes nothing."""
        quiet, live = io.StringIO(), io.StringIO()
        Progress("replay", quiet, live=False).abandon()
        drawn = Progress("replay", live, live=True, width=80)
        drawn.update("200 events")
        drawn.abandon()
        assert quiet.getvalue() == ""
        assert live.getvalue() == f"{CLEAR}replay: 200 events\n"

    def test_a_stream_that_is_not_a_terminal_is_detected(self) -> None:
        """Without `live`, a StringIO (not a TTY) gets no redraws."""
        out = io.StringIO()
        progress = Progress("replay", out, clock=FakeTimer())
        progress.update("200 events")
        assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("done", "total", "drawn"),
    [
        (0, 1000, "[........................]   0% 0 of 1000"),
        (420, 1000, "[##########..............]  42% 420 of 1000"),
        (1000, 1000, "[########################] 100% 1000 of 1000"),
        (1200, 1000, "[########################] 100% 1200 of 1000"),
        (0, 0, "[########################] 100% 0 of 0"),
    ],
    ids=["none", "part", "all", "more-than-counted", "nothing-to-do"],
)
def test_bar(done: int, total: int, drawn: str) -> None:
    assert bar(done, total) == drawn
