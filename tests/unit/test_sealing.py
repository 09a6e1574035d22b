"""Sealing stored values (AES-256-GCM under a key ring) and the store's column forms: pure."""

from __future__ import annotations

import base64
import os

import pytest

from service.crypto.sealing import (
    HEADER_BYTES,
    CannotOpen,
    EncryptionKeyError,
    generate_key,
    key_id,
    keyring_from,
    parse_key,
    sealed_key_id,
)
from service.store.errors import SealedDataUnreadable
from service.store.sealing import (
    PLAINTEXT,
    Sealer,
    open_body,
    open_headers,
    seal_event,
)

RAW = bytes(range(32))
STD = base64.b64encode(RAW).decode()
URLSAFE = base64.urlsafe_b64encode(RAW).decode()
OLD = generate_key()
NEW = generate_key()


@pytest.mark.parametrize(
    "text",
    [STD, STD.rstrip("="), URLSAFE, URLSAFE.rstrip("="), f"  {STD}\n"],
    ids=["standard", "unpadded", "urlsafe", "urlsafe-unpadded", "surrounding-space"],
)
def test_key_forms_that_parse(text: str) -> None:
    assert parse_key(text).id == key_id(RAW)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must encode 32 bytes, not 0"),
        (base64.b64encode(os.urandom(16)).decode(), "must encode 32 bytes, not 16"),
        (base64.b64encode(os.urandom(33)).decode(), "must encode 32 bytes, not 33"),
        ("not base64 at all!", "is not base64"),
        ("é" * 44, "is not base64"),
    ],
    ids=["empty", "short", "long", "punctuation", "non-ascii"],
)
def test_malformed_keys_are_refused_without_echoing_them(text: str, message: str) -> None:
    with pytest.raises(EncryptionKeyError) as caught:
        parse_key(text)
    assert message in str(caught.value)
    if text:
        assert text not in str(caught.value)


def test_a_ring_names_the_bad_key_by_position_and_refuses_repeats() -> None:
    with pytest.raises(EncryptionKeyError, match=r"^key 2: must encode 32 bytes"):
        keyring_from([OLD, "AAAA"])
    with pytest.raises(EncryptionKeyError, match=r"^key 3 repeats key 1$"):
        keyring_from([OLD, NEW, OLD.rstrip("=")])
    with pytest.raises(EncryptionKeyError, match="at least one key"):
        keyring_from([])


def test_key_ids_name_keys_without_revealing_them() -> None:
    ring = keyring_from([NEW, OLD])
    assert ring.ids == (parse_key(NEW).id, parse_key(OLD).id)
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ring.ids)
    assert parse_key(NEW).id not in NEW
    assert NEW not in repr(ring.current)
    assert "AESGCM" not in repr(ring.current)


def test_the_first_key_seals_and_every_key_opens() -> None:
    old_ring = keyring_from([OLD])
    sealed_old = old_ring.seal(b"dataset s3://bucket/x?sig=1", b"ctx")
    ring = keyring_from([NEW, OLD])
    sealed_new = ring.seal(b"fresh", b"ctx")
    assert sealed_key_id(sealed_old) == parse_key(OLD).id
    assert sealed_key_id(sealed_new) == parse_key(NEW).id
    assert ring.open(sealed_old, b"ctx") == b"dataset s3://bucket/x?sig=1"
    assert ring.open(sealed_new, b"ctx") == b"fresh"
    assert b"dataset" not in sealed_old
    # Random nonces: the same value sealed twice differs.
    assert ring.seal(b"fresh", b"ctx") != sealed_new


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


SEALED = keyring_from([OLD]).seal(b"secret text", b"events.raw_body:evt_1")


@pytest.mark.parametrize(
    ("sealed", "context", "reason"),
    [
        (SEALED, b"events.raw_body:evt_2", "does not authenticate"),  # moved to another row
        (SEALED, b"events.headers:evt_1", "does not authenticate"),  # moved to another column
        (flip(SEALED, HEADER_BYTES + 2), b"events.raw_body:evt_1", "does not authenticate"),
        (flip(SEALED, len(SEALED) - 1), b"events.raw_body:evt_1", "does not authenticate"),
        (flip(SEALED, HEADER_BYTES - 1), b"events.raw_body:evt_1", "does not authenticate"),
        (SEALED[:-1], b"events.raw_body:evt_1", "does not authenticate"),
        (SEALED[:10], b"events.raw_body:evt_1", "not a sealed value"),
        (b"\x02" + SEALED[1:], b"events.raw_body:evt_1", "not a sealed value"),
        (b'{"plain": "json"}', b"events.raw_body:evt_1", "not a sealed value"),
    ],
    ids=[
        "other-row",
        "other-column",
        "ciphertext-bit",
        "tag-bit",
        "nonce-bit",
        "truncated",
        "too-short",
        "unknown-version",
        "clear-text",
    ],
)
def test_what_does_not_open(sealed: bytes, context: bytes, reason: str) -> None:
    with pytest.raises(CannotOpen, match=reason):
        keyring_from([NEW, OLD]).open(sealed, context)


def test_a_value_sealed_under_a_key_not_in_the_ring_names_that_key() -> None:
    with pytest.raises(CannotOpen) as caught:
        keyring_from([NEW]).open(SEALED, b"events.raw_body:evt_1")
    assert caught.value.key_id == parse_key(OLD).id
    assert "not in ENCRYPTION_KEYS" in str(caught.value)


HEADERS = [["content-type", "application/json"], ["x-llmtune-signature", "sha256=ab"]]
BODY = b'{"event": "training.completed", "data": {"jobId": "job-1"}}'


def test_plaintext_sealer_stores_values_as_they_are() -> None:
    stored = seal_event(PLAINTEXT, "evt_1", BODY, HEADERS)
    assert stored == {"raw_body": BODY, "headers": HEADERS, "sealed_with": None}
    assert open_body(PLAINTEXT, "evt_1", BODY, None) == BODY
    assert PLAINTEXT.seal_text("prompt", "c") == "prompt"


def test_sealed_event_columns_round_trip_and_hide_the_text() -> None:
    sealer = Sealer(keyring_from([NEW, OLD]))
    stored = seal_event(sealer, "evt_1", BODY, HEADERS)
    assert stored["sealed_with"] == parse_key(NEW).id
    assert b"training" not in stored["raw_body"]
    assert isinstance(stored["headers"], str)
    assert "content-type" not in stored["headers"]
    assert open_body(sealer, "evt_1", stored["raw_body"], stored["sealed_with"]) == BODY
    assert open_headers(sealer, "evt_1", stored["headers"], stored["sealed_with"]) == HEADERS


def test_rows_kept_in_clear_still_read_with_keys_set() -> None:
    sealer = Sealer(keyring_from([NEW]))
    assert open_body(sealer, "evt_1", BODY, None) == BODY
    assert open_headers(sealer, "evt_1", HEADERS, None) == HEADERS
    assert sealer.open_text("prompt", None, "c") == "prompt"


def test_body_and_headers_cannot_be_swapped_between_rows() -> None:
    sealer = Sealer(keyring_from([NEW]))
    one = seal_event(sealer, "evt_1", BODY, HEADERS)
    with pytest.raises(SealedDataUnreadable):
        open_body(sealer, "evt_2", one["raw_body"], one["sealed_with"])
    with pytest.raises(SealedDataUnreadable):
        open_headers(sealer, "evt_2", one["headers"], one["sealed_with"])


def test_sealed_rows_need_the_keys() -> None:
    stored = seal_event(Sealer(keyring_from([OLD])), "evt_1", BODY, HEADERS)
    with pytest.raises(SealedDataUnreadable, match="ENCRYPTION_KEYS is not set") as caught:
        open_body(PLAINTEXT, "evt_1", stored["raw_body"], stored["sealed_with"])
    assert caught.value.key_id == parse_key(OLD).id
    with pytest.raises(SealedDataUnreadable, match="not in ENCRYPTION_KEYS"):
        open_body(Sealer(keyring_from([NEW])), "evt_1", stored["raw_body"], stored["sealed_with"])


def test_writing_in_clear_with_a_ring_opens_old_rows_but_seals_nothing() -> None:
    ring = keyring_from([OLD])
    stored = seal_event(Sealer(ring), "evt_1", BODY, HEADERS)
    to_clear = Sealer(ring, seal_new=False)
    assert to_clear.key_id is None
    assert open_body(to_clear, "evt_1", stored["raw_body"], stored["sealed_with"]) == BODY
    assert seal_event(to_clear, "evt_1", BODY, HEADERS)["raw_body"] == BODY


def test_text_with_any_unicode_round_trips() -> None:
    sealer = Sealer(keyring_from([NEW]))
    text = "Réponds en français 🙂 \u2028 done"
    stored = sealer.seal_text(text, "inference_runs.output:dlv_1:0")
    assert stored.isascii()
    assert sealer.open_text(stored, sealer.key_id, "inference_runs.output:dlv_1:0") == text


@pytest.mark.parametrize(
    "stored",
    ["not base64 at all!", "", base64.b64encode(b"short").decode(), ["a", "list"], None],
    ids=["punctuation", "empty", "too-short", "json-list", "null"],
)
def test_an_altered_text_or_json_column_is_unreadable_not_a_crash(stored: object) -> None:
    sealer = Sealer(keyring_from([NEW]))
    with pytest.raises(SealedDataUnreadable):
        sealer.open_text(stored, sealer.key_id, "c")  # type: ignore[arg-type]
    with pytest.raises(SealedDataUnreadable):
        open_headers(sealer, "evt_1", stored, sealer.key_id)
