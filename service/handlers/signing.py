"""Standard Webhooks signing, as the `http` handler sends it: symmetric `v1` (HMAC-SHA256) and
asymmetric `v1a` (ed25519). Pure.

Both sign the same content, `{msg_id}.{timestamp}.{body}`; several signatures go in the one
`webhook-signature` header, separated by spaces (`v1,<b64> v1a,<b64>`).

- `v1`: a secret is `whsec_` followed by the base64 of 24 to 64 random bytes (192 to 512 bits, as
  the specification asks); the HMAC key is those decoded bytes, not the text. The value is
  `v1,` + base64(HMAC-SHA256(key, content)).
- `v1a`: a private key is `whsk_` followed by the base64 of the 32-byte RFC 8032 seed, or of 64
  bytes, seed then public key, as libsodium keeps them (the public half must match the seed).
  The public key, for the destination's owner, is `whpk_` + base64 of its 32 bytes. The value is
  `v1a,` + base64 of the 64-byte ed25519 signature of the content.

Base64 is the standard alphabet, with or without `=` padding. Nothing here may put a secret, a
key or a part of one into an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.whsec import WHSEC_PREFIX

PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
SEED_BYTES = 32  # an ed25519 private key (RFC 8032); its public key has as many bytes
SECRET_BYTES = 32  # of a new `whsec_` secret: 256 bits, as the Standard Webhooks libraries make


def _decode(text: str, prefix: str) -> bytes:
    """The bytes of `prefix` + base64 (padded or not); `ValueError` naming only the format."""
    if not text.startswith(prefix):
        raise ValueError(f"must start with {prefix!r}")
    encoded = text.removeprefix(prefix)
    # Unpadded base64 is common in the wild and accepted by the reference libraries.
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        raise ValueError(f"must be {prefix!r} followed by standard base64") from None


def _content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """What both schemes sign: `{msg_id}.{timestamp}.{body}`."""
    if not msg_id or "." in msg_id:
        # A dot would make `{id}.{timestamp}.{body}` ambiguous (the specification forbids it).
        raise ValueError("message id must be non-empty and contain no '.'")
    return f"{msg_id}.{timestamp}.".encode() + body


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret; `ValueError` (without the secret) if malformed."""
    key = _decode(secret, WHSEC_PREFIX)
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(
            f"must encode {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes of key, not {len(key)}"
        )
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message (HMAC-SHA256 with a `whsec_` secret)."""
    content = _content(msg_id, timestamp, body)
    digest = hmac.new(decode_secret(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def decode_private_key(private_key: str) -> Ed25519PrivateKey:
    """The ed25519 key inside a `whsk_` private key (32-byte seed, or 64 bytes seed‖public);
    `ValueError` (without the key) if malformed."""
    if private_key.startswith(PUBLIC_KEY_PREFIX):
        raise ValueError(
            f"must start with {PRIVATE_KEY_PREFIX!r} ({PUBLIC_KEY_PREFIX!r} is public)"
        )
    raw = _decode(private_key, PRIVATE_KEY_PREFIX)
    if len(raw) not in (SEED_BYTES, 2 * SEED_BYTES):
        raise ValueError(
            f"must encode {SEED_BYTES} bytes (the seed) or {2 * SEED_BYTES} (seed and public "
            f"key), not {len(raw)}"
        )
    key = Ed25519PrivateKey.from_private_bytes(raw[:SEED_BYTES])
    public = raw[SEED_BYTES:]
    if public and not hmac.compare_digest(public, key.public_key().public_bytes_raw()):
        raise ValueError("the last 32 bytes are not the public key of the first 32 (the seed)")
    return key


def public_key_for(private_key: str) -> str:
    """The `whpk_` public key of a `whsk_` private key, to give to the destination's owner."""
    raw = decode_private_key(private_key).public_key().public_bytes_raw()
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def sign_ed25519(private_key: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1a,<base64>` signature of one message (ed25519 with a `whsk_` private key)."""
    content = _content(msg_id, timestamp, body)
    signature = decode_private_key(private_key).sign(content)
    return "v1a," + base64.b64encode(signature).decode("ascii")


def generate_key_pair() -> tuple[str, str]:
    """A new (`whsk_` private key of the 32-byte seed, `whpk_` public key)."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    private_key = PRIVATE_KEY_PREFIX + base64.b64encode(seed).decode("ascii")
    return private_key, public_key_for(private_key)


def generate_secret() -> str:
    """A new `whsec_` secret for `v1`: base64 of SECRET_BYTES random bytes."""
    return WHSEC_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")
