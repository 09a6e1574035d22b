"""Signature verification over the exact received bytes. Pure: no I/O, no JSON, no clock.

LLMTune signs `hex(HMAC-SHA256(secret, raw body))` (W3), sent as `X-Webhook-Signature` (W3) or
`X-LLMTune-Signature` (W2), possibly as `sha256=<hex>` (W1 style). The docs do not settle whether
a `whsec_` secret is used whole or without its prefix, so both readings are tried. No version
signs a timestamp, so there is no replay window here: deduplication stops replays.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from service.whsec import WHSEC_PREFIX

SIGNATURE_HEADERS = ("x-webhook-signature", "x-llmtune-signature")
_DIGEST_HEX_LEN = 64
# A real header is 64 hex digits plus an optional prefix; anything far longer is not worth parsing.
_MAX_HEADER_LEN = 256

Reason = Literal[
    "no_secret_configured",
    "missing_signature",
    "body_signature_unsupported",
    "malformed_signature",
    "signature_mismatch",
]


class VerificationError(Exception):
    """The delivery is not proven to come from LLMTune; `reason` is a short slug for logs."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason

    @property
    def missing(self) -> bool:
        """True when no signature was presented at all (as opposed to a wrong one)."""
        return self.reason in ("missing_signature", "body_signature_unsupported")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One way of reading one configured secret as an HMAC key."""

    secret_index: int
    reading: Literal["whole", "stripped"]
    key: bytes


@dataclass(frozen=True, slots=True)
class Verified:
    """Which header and which key reading proved the delivery."""

    header: str
    secret_index: int
    reading: Literal["whole", "stripped"]


def signing_keys(secrets: Sequence[str]) -> tuple[SigningKey, ...]:
    """Every key reading of every secret, whole string first (the docs' literal reading)."""
    keys: list[SigningKey] = []
    for index, secret in enumerate(secrets):
        keys.append(SigningKey(index, "whole", secret.encode("utf-8")))
        if secret.startswith(WHSEC_PREFIX) and len(secret) > len(WHSEC_PREFIX):
            keys.append(SigningKey(index, "stripped", secret[len(WHSEC_PREFIX) :].encode("utf-8")))
    return tuple(keys)


def sign(secret: str, body: bytes) -> str:
    """The lower-case hex signature LLMTune sends for `body` with `secret` used whole."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def parse_signature(value: str) -> bytes:
    """Decode `<hex>` or `sha256=<hex>` (any case) to the 32 digest bytes."""
    text = value.strip()
    if len(text) > _MAX_HEADER_LEN:
        raise VerificationError("malformed_signature")
    if text[:7].lower() == "sha256=":
        text = text[7:].strip()
    if len(text) != _DIGEST_HEX_LEN or not text.isascii():
        raise VerificationError("malformed_signature")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise VerificationError("malformed_signature") from None


def find_signatures(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The signature headers present, as (lower-case name, value), looked up case-insensitively."""
    return [(name.lower(), value) for name, value in headers if name.lower() in SIGNATURE_HEADERS]


def verify(keys: Sequence[SigningKey], headers: Iterable[tuple[str, str]], body: bytes) -> Verified:
    """Prove `body` was signed with one of `keys`, or raise `VerificationError` with a reason."""
    presented = find_signatures(headers)
    if not keys:
        raise VerificationError("no_secret_configured")
    if not presented:
        # A cheap byte test, not a parse: a W1 body carries its signature inside itself, which
        # cannot cover the body, so it is never accepted as proof; the reason tells the operator.
        reason: Reason = (
            "body_signature_unsupported" if b'"signature"' in body else "missing_signature"
        )
        raise VerificationError(reason)
    provided: list[tuple[str, bytes]] = []
    for name, value in presented:
        try:
            provided.append((name, parse_signature(value)))
        except VerificationError:
            continue
    if not provided:
        raise VerificationError("malformed_signature")
    # One HMAC per key reading, computed only until one matches (the usual case: the first).
    for key in keys:
        expected = hmac.new(key.key, body, hashlib.sha256).digest()
        for name, digest in provided:
            if hmac.compare_digest(expected, digest):
                return Verified(header=name, secret_index=key.secret_index, reading=key.reading)
    raise VerificationError("signature_mismatch")
