"""A claimed delivery's hold on one of the worker's handler slots."""

from __future__ import annotations

import asyncio


class Turn:
    """A slot taken from `slots`, given back once whichever way the attempt goes."""

    __slots__ = ("_slots",)

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots: asyncio.Semaphore | None = slots

    def end(self) -> None:
        """Give the slot back (again: nothing)."""
        if self._slots is not None:
            self._slots.release()
            self._slots = None
