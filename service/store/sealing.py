"""Which columns are sealed at rest, and how: the store's side of `service/crypto/sealing.py`.

Sealed columns: `events.raw_body` and `events.headers`, `inference_runs.prompt` and `.output`,
and `jobs.dataset` (a dataset location may be a pre-signed URL).
A row's `sealed_with` names the key that sealed them, or is NULL for a row kept in clear (written
before encryption was turned on, or with it off); both kinds read the same. Each value's context
is its table, column and the row's identity (the event id; the run's delivery and prompt index,
which an upsert keeps; the job id), so a sealed value moved to another row or column does not open.
Everything indexed or compared in SQL (dedup keys, hashes, sizes, ids) stays in clear.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from service.crypto.sealing import CannotOpen, Keyring
from service.store.errors import SealedDataUnreadable


class Sealer:
    """Seals values on write (when a keyring is set) and opens them on read (always)."""

    def __init__(self, keyring: Keyring | None = None, *, seal_new: bool = True) -> None:
        # seal_new=False opens with the keyring but writes in clear (`rotate-keys --to-clear`).
        self.keyring = keyring
        self._sealing = keyring if seal_new else None

    @property
    def key_id(self) -> str | None:
        """The id to store in `sealed_with` for rows written now; None: rows are kept in clear."""
        return None if self._sealing is None else self._sealing.current.id

    def seal(self, value: bytes, context: str) -> bytes:
        """`value` as stored: sealed under the current key, or unchanged when writing in clear."""
        if self._sealing is None:
            return value
        return self._sealing.seal(value, context.encode())

    def open(self, value: bytes, sealed_with: str | None, context: str) -> bytes:
        """A stored value in clear; `SealedDataUnreadable` when it cannot be opened."""
        if sealed_with is None:
            return value
        if self.keyring is None:
            raise SealedDataUnreadable(CannotOpen(sealed_with, "ENCRYPTION_KEYS is not set"))
        try:
            return self.keyring.open(value, context.encode())
        except CannotOpen as exc:
            raise SealedDataUnreadable(exc) from None

    def seal_text(self, value: str, context: str) -> str:
        """A text column's stored form: base64 of the sealed UTF-8, or `value` itself."""
        if self._sealing is None:
            return value
        return base64.b64encode(self.seal(value.encode(), context)).decode("ascii")

    def open_text(self, value: str, sealed_with: str | None, context: str) -> str:
        """The clear text of a text column (see `seal_text`)."""
        if sealed_with is None:
            return value
        try:
            sealed = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError):  # altered in the database
            raise SealedDataUnreadable(CannotOpen(sealed_with, "not a sealed value")) from None
        return self.open(sealed, sealed_with, context).decode()

    def seal_json(self, value: Any, context: str) -> Any:
        """A JSON column's stored form: a JSON string holding `seal_text` of the document."""
        if self._sealing is None:
            return value
        return self.seal_text(orjson.dumps(value).decode(), context)

    def open_json(self, value: Any, sealed_with: str | None, context: str) -> Any:
        """The clear document of a JSON column (see `seal_json`)."""
        if sealed_with is None:
            return value
        return orjson.loads(self.open_text(value, sealed_with, context))


PLAINTEXT = Sealer()


def seal_event(
    sealer: Sealer, event_id: str, raw_body: bytes, headers: list[list[str]]
) -> dict[str, Any]:
    """An event row's sealed columns, as stored."""
    return {
        "raw_body": sealer.seal(raw_body, body_context(event_id)),
        "headers": sealer.seal_json(headers, headers_context(event_id)),
        "sealed_with": sealer.key_id,
    }


def open_body(sealer: Sealer, event_id: str, raw_body: bytes, sealed_with: str | None) -> bytes:
    """An event's raw body in clear."""
    return sealer.open(raw_body, sealed_with, body_context(event_id))


def open_headers(
    sealer: Sealer, event_id: str, headers: Any, sealed_with: str | None
) -> list[list[str]]:
    """An event's stored headers in clear."""
    opened: list[list[str]] = sealer.open_json(headers, sealed_with, headers_context(event_id))
    return opened


def body_context(event_id: str) -> str:
    return f"events.raw_body:{event_id}"


def headers_context(event_id: str) -> str:
    return f"events.headers:{event_id}"


def prompt_context(delivery_id: str, prompt_index: int) -> str:
    return f"inference_runs.prompt:{delivery_id}:{prompt_index}"


def dataset_context(job_id: str) -> str:
    return f"jobs.dataset:{job_id}"


def open_dataset(
    sealer: Sealer, job_id: str, dataset: str | None, sealed_with: str | None
) -> str | None:
    """A job's dataset location in clear (None when the job has none)."""
    if dataset is None:
        return None
    return sealer.open_text(dataset, sealed_with, dataset_context(job_id))


def output_context(delivery_id: str, prompt_index: int) -> str:
    return f"inference_runs.output:{delivery_id}:{prompt_index}"
