"""Standard Webhooks signing (symmetric `v1`), as the `http` handler sends it. Pure.

A secret is `whsec_` followed by the base64 of 24 to 64 random bytes (192 to 512 bits, as the
specification asks); the HMAC key is those decoded bytes, not the text. The signed content is
`{msg_id}.{timestamp}.{body}`, and the header value is `v1,` + base64(HMAC-SHA256(key, content)).
Nothing here may put the secret or the key into an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's marker, not a secret
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret; `ValueError` (without the secret) if malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX!r}")
    encoded = secret.removeprefix(SECRET_PREFIX)
    # Unpadded base64 is common in the wild and accepted by the reference libraries.
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        raise ValueError(f"must be {SECRET_PREFIX!r} followed by standard base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(
            f"must encode {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes of key, not {len(key)}"
        )
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (`v1,<base64>`) for one message."""
    if not msg_id or "." in msg_id:
        # A dot would make `{id}.{timestamp}.{body}` ambiguous (the specification forbids it).
        raise ValueError("message id must be non-empty and contain no '.'")
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")
