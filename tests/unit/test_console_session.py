"""Console sessions: signed, expiring cookies tied to the token that signed in, and CSRF tokens."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from service.admin_tokens import AdminToken
from service.http.console import session
from tests.helpers import T0

WRITER = AdminToken(name="ops", scope="write", secret=b"writer-secret-0123456789")
READER = AdminToken(name="viewer", scope="read", secret=b"reader-secret-0123456789")
TOKENS = (WRITER, READER)


class TestSession:
    def test_round_trip(self) -> None:
        """A cookie just issued verifies to the same token, expiry and CSRF token."""
        cookie, issued = session.issue(WRITER, T0)
        assert session.verify(cookie, TOKENS, T0 + timedelta(hours=1)) == issued
        assert issued.expires == int(T0.timestamp()) + session.LIFETIME_SECONDS

    def test_cookie_never_carries_the_token(self) -> None:
        """Neither the secret nor its base64 appears in the cookie."""
        cookie, _ = session.issue(WRITER, T0)
        decoded = base64.urlsafe_b64decode(cookie.split(".")[0] + "==")
        assert WRITER.secret not in cookie.encode()
        assert WRITER.secret not in decoded
        assert b"ops" in decoded  # the name only

    def test_expired(self) -> None:
        """A session is refused from its expiry on."""
        cookie, _ = session.issue(WRITER, T0)
        assert session.verify(cookie, TOKENS, T0 + timedelta(hours=8)) is None

    def test_token_removed_or_rotated(self) -> None:
        """Removing the token, or giving its name a new secret, ends its sessions."""
        cookie, _ = session.issue(WRITER, T0)
        rotated = AdminToken(name="ops", scope="write", secret=b"a-new-secret")
        assert session.verify(cookie, (READER,), T0) is None
        assert session.verify(cookie, (rotated, READER), T0) is None

    def test_scope_is_read_from_current_tokens(self) -> None:
        """A token made read-only keeps its sessions, read-only from then on."""
        cookie, _ = session.issue(WRITER, T0)
        demoted = AdminToken(name="ops", scope="read", secret=WRITER.secret)
        found = session.verify(cookie, (demoted,), T0)
        assert found is not None
        assert not found.token.can_write

    def test_other_tokens_session_cannot_be_claimed(self) -> None:
        """A payload renamed to another token does not verify (different key)."""
        cookie, _ = session.issue(READER, T0)
        payload, mac = cookie.split(".")
        raw = base64.urlsafe_b64decode(payload + "==").replace(b"viewer", b"ops")
        forged = base64.urlsafe_b64encode(raw).decode().rstrip("=") + "." + mac
        assert session.verify(forged, TOKENS, T0) is None

    @pytest.mark.parametrize(
        "cookie",
        [
            pytest.param(None, id="absent"),
            pytest.param("", id="empty"),
            pytest.param("abc", id="no-dot"),
            pytest.param("a.b.c", id="two-dots"),
            pytest.param("!!!.???", id="bad-base64"),
            pytest.param("é.é", id="non-ascii"),
            pytest.param("bm90IGpzb24.AAAA", id="not-json"),
            pytest.param("eyJhIjoxfQ.AAAA", id="json-object"),
            pytest.param("WyJvcHMiLCJ4IiwieCJd.AAAA", id="expiry-not-int"),
            pytest.param("WyJvcHMiLDk5OTk5OTk5OTksIngiXQ.AAAA", id="bad-mac"),
            pytest.param("x" * 600 + ".a", id="too-long"),
        ],
    )
    def test_malformed_cookies_are_refused(self, cookie: str | None) -> None:
        """Anything but an intact cookie of ours is no session, never an exception."""
        assert session.verify(cookie, TOKENS, T0) is None

    def test_tampered_mac(self) -> None:
        """One changed character of the MAC is refused."""
        cookie, _ = session.issue(WRITER, T0)
        # A middle character: the last one of unpadded base64 also holds unused bits, so
        # changing only those would leave the MAC as it was.
        at = len(cookie) - 10
        flipped = cookie[:at] + ("A" if cookie[at] != "A" else "B") + cookie[at + 1 :]
        assert session.verify(flipped, TOKENS, T0) is None


class TestCsrf:
    def test_each_session_has_its_own(self) -> None:
        """Two sessions of one token get different CSRF tokens."""
        _, first = session.issue(WRITER, T0)
        _, second = session.issue(WRITER, T0)
        assert first.csrf != second.csrf

    @pytest.mark.parametrize(
        ("expected", "presented", "ok"),
        [
            pytest.param("abc", "abc", True, id="equal"),
            pytest.param("abc", "abd", False, id="different"),
            pytest.param("abc", None, False, id="missing"),
            pytest.param("abc", "", False, id="empty"),
            pytest.param(None, "abc", False, id="no-cookie"),
            pytest.param("", "", False, id="both-empty"),
            pytest.param("abc", "äbc", False, id="non-ascii"),
        ],
    )
    def test_same_secret(self, expected: str | None, presented: str | None, ok: bool) -> None:
        """Equal non-empty values only; non-ASCII input is compared, not an error."""
        assert session.same_secret(expected, presented) is ok
