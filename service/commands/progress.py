"""A progress line for bulk commands: redrawn in place on a terminal, one summary line else."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TextIO

# Back to the start of the line, erase it (the progress line is redrawn in place).
_CLEAR_LINE = "\r\x1b[K"


class Progress:
    """One line of progress on `out`: redrawn in place on a terminal (at most every `every`
    seconds), silent otherwise; `finish` then writes one summary line either way."""

    def __init__(
        self,
        label: str,
        out: TextIO,
        *,
        live: bool | None = None,
        width: int | None = None,
        every: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._label = label
        self._out = out
        self._live = out.isatty() if live is None else live
        self._width = width or (_columns(out) if self._live else 80)
        self._every = every
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None

    def update(self, text: str) -> None:
        """Show `text` now, unless off a terminal or the last redraw is too recent."""
        now = self._clock()
        if not self._live or (self._drawn_at is not None and now - self._drawn_at < self._every):
            return
        self._drawn_at = now
        # Cut short of the terminal's width: a wrapped line could not be redrawn in place.
        self._out.write(_CLEAR_LINE + f"{self._label}: {text}"[: self._width - 1])
        self._out.flush()

    def finish(self, text: str) -> None:
        """Replace the progress line with a summary and the time taken."""
        elapsed = self._clock() - self._started
        self._end_line()
        self._out.write(f"{self._label}: {text} in {elapsed:.1f} s\n")
        self._out.flush()

    def abandon(self) -> None:
        """End a drawn progress line, so that what is printed next starts on its own line."""
        if self._drawn_at is not None:
            self._out.write("\n")
            self._out.flush()
            self._drawn_at = None

    def _end_line(self) -> None:
        if self._drawn_at is not None:
            self._out.write(_CLEAR_LINE)


def bar(done: int, total: int, width: int = 24) -> str:
    """`[#######.........]  42% 420 of 1000`: a fixed-width bar for work of a known size (a
    total of 0 counts as done; more than the total, as rows added meanwhile, caps at full)."""
    fraction = 1.0 if total <= 0 else min(1.0, done / total)
    filled = round(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%} {done} of {total}"


def _columns(out: TextIO) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (OSError, ValueError):
        return 80
