"""Errors the store raises about what it holds (as `db.StoreUnavailable` is about reaching it),
kept apart from the sealing code so the HTTP layer can map them without importing it."""

from __future__ import annotations

from service.crypto.sealing import CannotOpen


class SealedDataUnreadable(Exception):
    """A stored value is sealed under a key that is not configured, or does not open."""

    def __init__(self, cause: CannotOpen) -> None:
        super().__init__(str(cause))
        self.key_id = cause.key_id
