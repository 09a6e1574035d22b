"""`keys`: make keys for the service's configuration. `keys generate` prints a new ed25519 pair
for an `http` route's `v1a` signatures: the `whsk_` private key (the 32-byte seed) goes into the
route's options, the `whpk_` public key to whoever runs the destination. `keys generate --hmac`
prints a new `whsec_` secret for the route's `v1` signatures (the same secret on both ends).
`keys generate --encryption` prints one key for ENCRYPTION_KEYS (encryption at rest), alone on
its line.

Needs no settings, no database and no network; the keys are printed, never stored or logged.
"""

from __future__ import annotations

import argparse

import orjson

from service.crypto.sealing import generate_key
from service.handlers.signing import generate_key_pair, generate_secret

HINT = (
    '# put private_key in the http route\'s options (signing = "v1a" or "both"); '
    "give public_key to the destination's owner."
)
HMAC_HINT = (
    '# put secret in the http route\'s options (signing = "v1", the default, or "both"); '
    "give the same secret to the destination's owner, who verifies v1 signatures with it."
)


def generate_lines(*, as_json: bool, encryption: bool = False, hmac: bool = False) -> list[str]:
    """A new pair, as TOML lines with a comment, or as one JSON line; with `hmac`, a new
    `whsec_` secret instead; with `encryption`, a new key for ENCRYPTION_KEYS."""
    if hmac:
        secret = generate_secret()
        if as_json:
            return [orjson.dumps({"secret": secret}).decode()]
        return [f'secret = "{secret}"', HMAC_HINT]
    if encryption:
        key = generate_key()
        return [orjson.dumps({"encryptionKey": key}).decode() if as_json else key]
    private_key, public_key = generate_key_pair()
    if as_json:
        return [orjson.dumps({"privateKey": private_key, "publicKey": public_key}).decode()]
    return [f'private_key = "{private_key}"', f'public_key  = "{public_key}"', HINT]


def cmd_keys_generate(args: argparse.Namespace) -> int:
    """Print a new ed25519 key pair, a new `whsec_` secret, or a new encryption key."""
    lines = generate_lines(as_json=args.json, encryption=args.encryption, hmac=args.hmac)
    for line in lines:
        print(line)
    return 0
