"""Authenticated encryption of stored values (AES-256-GCM) under a ring of keys: the first key
seals, every key opens. Pure, but for the random nonce.

A sealed value is `version (1 byte) + key id (8) + nonce (12) + ciphertext and tag`. The caller
passes a context (table, column and the row's identity), bound in as associated data: a value
copied into another row or column fails to open instead of reading as that row's data. A key's id
is the start of SHA-256 over the key: it names the key without revealing it. Nothing here may put
a key into an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"\x01"
KEY_BYTES = 32
ID_BYTES = 8
NONCE_BYTES = 12
HEADER_BYTES = len(VERSION) + ID_BYTES + NONCE_BYTES
TAG_BYTES = 16


class EncryptionKeyError(ValueError):
    """A configured key is malformed; the message never holds the key."""


class CannotOpen(Exception):
    """A sealed value could not be opened: its key is not in the ring, or it fails to authenticate
    (tampered, truncated, or moved from another row)."""

    def __init__(self, key_id: str | None, reason: str) -> None:
        super().__init__(f"sealed value (key {key_id or 'unknown'}) cannot be opened: {reason}")
        self.key_id = key_id
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DataKey:
    """One AES-256 key and its public id."""

    id: str
    aead: AESGCM = field(repr=False, compare=False)


def parse_key(text: str) -> DataKey:
    """A key from base64 (standard or URL-safe, padding optional) of exactly 32 bytes."""
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise EncryptionKeyError(
            "is not base64 (make one with `keys generate --encryption`)"
        ) from None
    if len(raw) != KEY_BYTES:
        raise EncryptionKeyError(f"must encode {KEY_BYTES} bytes, not {len(raw)}")
    return DataKey(id=key_id(raw), aead=AESGCM(raw))


def key_id(raw: bytes) -> str:
    """The id of a raw key: 16 hex digits."""
    return hashlib.sha256(b"llmtune-receiver key id\x00" + raw).digest()[:ID_BYTES].hex()


def generate_key() -> str:
    """A new random key, as ENCRYPTION_KEYS takes it."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def sealed_key_id(sealed: bytes) -> str | None:
    """The id of the key that sealed `sealed`, or None when it is no sealed value of ours."""
    if len(sealed) < HEADER_BYTES + TAG_BYTES or sealed[:1] != VERSION:
        return None
    return sealed[1 : 1 + ID_BYTES].hex()


class Keyring:
    """The configured keys, first one current."""

    def __init__(self, keys: Sequence[DataKey]) -> None:
        if not keys:
            raise EncryptionKeyError("at least one key is needed")
        self.keys = tuple(keys)
        self._by_id = {key.id: key for key in self.keys}

    @property
    def current(self) -> DataKey:
        """The key that seals."""
        return self.keys[0]

    @property
    def ids(self) -> tuple[str, ...]:
        """Every key's id, current first."""
        return tuple(key.id for key in self.keys)

    def has(self, key_id: str) -> bool:
        """True when the key named `key_id` is in the ring."""
        return key_id in self._by_id

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """`plaintext` sealed under the current key, bound to `context`."""
        key = self.current
        nonce = os.urandom(NONCE_BYTES)
        header = VERSION + bytes.fromhex(key.id) + nonce
        return header + key.aead.encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        """The plaintext of `sealed`; `CannotOpen` when the key is missing or it does not
        authenticate under `context`."""
        found = sealed_key_id(sealed)
        if found is None:
            raise CannotOpen(None, "not a sealed value")
        key = self._by_id.get(found)
        if key is None:
            raise CannotOpen(found, "its key is not in ENCRYPTION_KEYS")
        nonce = sealed[1 + ID_BYTES : HEADER_BYTES]
        try:
            return key.aead.decrypt(nonce, sealed[HEADER_BYTES:], context)
        except InvalidTag:
            raise CannotOpen(found, "it does not authenticate (altered or moved)") from None


def keyring_from(texts: Sequence[str]) -> Keyring:
    """The ring of `texts` in order; `EncryptionKeyError` names the key by position only."""
    keys: list[DataKey] = []
    for number, text in enumerate(texts, 1):
        try:
            key = parse_key(text)
        except EncryptionKeyError as exc:
            raise EncryptionKeyError(f"key {number}: {exc}") from None
        for earlier, other in enumerate(keys, 1):
            if other.id == key.id:
                raise EncryptionKeyError(f"key {number} repeats key {earlier}")
        keys.append(key)
    return Keyring(keys)
