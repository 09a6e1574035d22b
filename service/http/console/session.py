"""Console sessions: a signed, expiring cookie naming the admin token that signed in, the CSRF
token tied to that session, and the login form's own CSRF nonce. Pure: `routes.py` does HTTP.

The MAC key is derived from the secret of the token that signed in, HMAC-SHA256(secret, label),
and is never stored or sent. Every worker process and replica derives the same key, so a session
survives restarts and `serve --workers N` (a per-process random key would not); removing or
rotating a token ends its sessions at once; and the token's scope is looked up on each request,
so a read-only token's session cannot act. The cookie holds the token's name, an expiry and a
random nonce, and the MAC: never the token.

A valid cookie is only half of a session: the session must also be live in `console_sessions`
(`service.store.console_sessions`), where logging out or the sessions page revokes it for every
process. Its id there is derived from the nonce (`session_id`), so the cookie format is unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from service.admin_tokens import AdminToken

COOKIE = "llmtune_console"
LOGIN_COOKIE = "llmtune_console_login"
LIFETIME_SECONDS = 8 * 3600
MAX_COOKIE = 512
_LABEL = b"llmtune-receiver console session v1"
_SESSION, _CSRF = b"session\x00", b"csrf\x00"  # what each MAC is of, kept apart
_ID = b"llmtune-receiver console session id\x00"


@dataclass(frozen=True, slots=True)
class Session:
    """A verified session: its id, whose it is, until when, and its CSRF token."""

    id: str
    token: AdminToken
    expires: int
    csrf: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(token: AdminToken, message: bytes) -> bytes:
    key = hmac.new(token.secret, _LABEL, hashlib.sha256).digest()
    return hmac.new(key, message, hashlib.sha256).digest()


def _csrf(token: AdminToken, nonce: bytes) -> str:
    return _b64(_mac(token, _CSRF + nonce))


def session_id(nonce: bytes) -> str:
    """The stored id of the session with `nonce` (a hash: the id is shown, the nonce seeds CSRF)."""
    return "ses_" + hashlib.sha256(_ID + nonce).hexdigest()[:32]


def issue(token: AdminToken, now: datetime) -> tuple[str, Session]:
    """A new session for `token`: the cookie value and the session it carries."""
    nonce = secrets.token_bytes(16)
    expires = int(now.timestamp()) + LIFETIME_SECONDS
    payload = orjson.dumps([token.name, expires, _b64(nonce)])
    cookie = _b64(payload) + "." + _b64(_mac(token, _SESSION + payload))
    found = Session(id=session_id(nonce), token=token, expires=expires, csrf=_csrf(token, nonce))
    return cookie, found


def verify(cookie: str | None, tokens: Sequence[AdminToken], now: datetime) -> Session | None:
    """The session in `cookie`, or None when it is absent, forged, expired or its token gone."""
    if not cookie or len(cookie) > MAX_COOKIE or cookie.count(".") != 1:
        return None
    payload_text, mac_text = cookie.split(".")
    try:
        payload, mac = _unb64(payload_text), _unb64(mac_text)
        fields = orjson.loads(payload)
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not (isinstance(fields, list) and len(fields) == 3):
        return None
    name, expires, nonce_text = fields
    token = next((t for t in tokens if t.name == name), None)
    if token is None or not isinstance(expires, int) or not isinstance(nonce_text, str):
        return None
    if not hmac.compare_digest(_mac(token, _SESSION + payload), mac):
        return None
    if expires <= now.timestamp():
        return None
    # Signed by us, so the nonce is our own base64.
    nonce = _unb64(nonce_text)
    return Session(id=session_id(nonce), token=token, expires=expires, csrf=_csrf(token, nonce))


def same_secret(expected: str | None, presented: str | None) -> bool:
    """Constant-time equality of a CSRF token (or login nonce) and what a form sent."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))


def login_nonce() -> str:
    """A fresh nonce for the login form's double-submit cookie."""
    return secrets.token_urlsafe(16)
