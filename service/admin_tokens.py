"""Admin tokens: the `ADMIN_TOKENS` entry format, and the constant-time check. Pure.

An entry is `name:scope:TOKEN` (scope `read` or `write`; the token itself may contain colons) or a
bare `TOKEN`, which is named `token-<position>` and may write, as before names existed. An entry
with a colon must be the full form: a typo such as `ci:wirte:...` stops start-up instead of
quietly becoming a write token. Lives outside `service.http` because `Services` (which may not
import Starlette) holds the parsed tokens; `service.http.admin.auth` re-exports it.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

Scope = Literal["read", "write"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Long enough that guessing over the network is hopeless even without the failure throttle.
MIN_TOKEN_LENGTH = 16


class TokenFormatError(ValueError):
    """An `ADMIN_TOKENS` entry is unusable; the message names its position, never its value."""


@dataclass(frozen=True)
class AdminToken:
    """One configured admin token: a name for logs, what it may do, and the secret bytes."""

    name: str
    scope: Scope
    # Kept out of repr so a logged or printed token shows its name only.
    secret: bytes = field(repr=False)

    @property
    def can_write(self) -> bool:
        """True when the token may call mutating endpoints."""
        return self.scope == "write"


def parse_admin_token(entry: str, position: int) -> AdminToken:
    """One entry (1-based `position`) as an `AdminToken`; raises `TokenFormatError`."""
    entry = entry.strip()
    if ":" not in entry:
        if not entry:
            raise TokenFormatError(f"entry {position} is empty")
        _check_length(entry, position)
        return AdminToken(name=f"token-{position}", scope="write", secret=entry.encode())
    name, _, rest = entry.partition(":")
    scope, _, secret = rest.partition(":")
    if not _NAME.fullmatch(name):
        raise TokenFormatError(
            f"entry {position}: the name must be 1-64 letters, digits, '_', '.' or '-' "
            "(format name:scope:TOKEN or a bare TOKEN without ':')"
        )
    if scope not in SCOPES:
        raise TokenFormatError(f"entry {position}: the scope must be read or write")
    if not secret:
        raise TokenFormatError(f"entry {position}: the token is empty")
    _check_length(secret, position)
    return AdminToken(name=name, scope=scope, secret=secret.encode())


def _check_length(secret: str, position: int) -> None:
    if len(secret) < MIN_TOKEN_LENGTH:
        raise TokenFormatError(
            f"entry {position}: the token is shorter than {MIN_TOKEN_LENGTH} characters"
        )


def parse_admin_tokens(entries: Sequence[str]) -> tuple[AdminToken, ...]:
    """Every entry parsed, in order; raises `TokenFormatError` on a bad or repeated name."""
    tokens = tuple(parse_admin_token(entry, index) for index, entry in enumerate(entries, 1))
    names = [token.name for token in tokens]
    for name in names:
        if names.count(name) > 1:
            raise TokenFormatError(f"the name {name!r} is used by more than one token")
    return tokens


def authenticate(presented: bytes | None, tokens: Sequence[AdminToken]) -> AdminToken | None:
    """The token whose secret equals `presented`, or None.

    Every token is compared (as bytes, with `hmac.compare_digest`) whatever matched, so timing
    tells nothing about which one, or whether any, was close.
    """
    if presented is None:
        return None
    found: AdminToken | None = None
    for token in tokens:
        if hmac.compare_digest(presented, token.secret) and found is None:
            found = token
    return found
