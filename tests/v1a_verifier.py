"""An independent verifier of Standard Webhooks `v1a` (ed25519) signatures, written from the
specification and using only the `whpk_` public key text, as a destination's owner would: it
shares no code with `service.handlers.signing`, so the two cannot be wrong together.

The specification: the public key is `whpk_` + base64 of the 32 raw bytes; the signed content
is `{webhook-id}.{webhook-timestamp}.{body}`; `webhook-signature` holds space-separated
`version,base64` entries, of which the `v1a` ones are base64 of a 64-byte ed25519 signature. One
valid entry is enough.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TOLERANCE_SECONDS = 5 * 60


def v1a_entries(header: str) -> list[str]:
    """The base64 values of the `v1a,` entries of a `webhook-signature` header."""
    return [entry.removeprefix("v1a,") for entry in header.split(" ") if entry.startswith("v1a,")]


def verify_v1a(
    public_key: str, headers: Mapping[str, str], body: bytes, *, now: int | None = None
) -> bool:
    """True when one `v1a` signature in `headers` verifies over `body` with `public_key` (and,
    given `now`, the timestamp is within five minutes of it)."""
    assert public_key.startswith("whpk_"), "not a Standard Webhooks public key"
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if now is not None and abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    content = f"{msg_id}.{timestamp}.".encode() + body
    for value in v1a_entries(headers["webhook-signature"]):
        try:
            key.verify(base64.b64decode(value, validate=True), content)
        except (InvalidSignature, binascii.Error):
            continue
        return True
    return False
