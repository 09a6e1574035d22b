"""ADMIN_TOKENS entries (`name:scope:TOKEN` or a bare TOKEN) and the constant-time lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.admin_tokens import (
    AdminToken,
    TokenFormatError,
    authenticate,
    parse_admin_token,
    parse_admin_tokens,
)
from service.config import ConfigError, load_settings
from service.firstrun import new_admin_token

LONG = "abc-0123456789-xyz"  # over the 16-character minimum


class TestParse:
    @pytest.mark.parametrize(
        ("entry", "expected"),
        [
            pytest.param(f"{LONG}", AdminToken("token-2", "write", LONG.encode()), id="bare"),
            pytest.param(f"ci:read:{LONG}", AdminToken("ci", "read", LONG.encode()), id="read"),
            pytest.param(
                f"ops:write:{LONG}", AdminToken("ops", "write", LONG.encode()), id="write"
            ),
            pytest.param(
                f"ops:write:a:b:{LONG}",
                AdminToken("ops", "write", f"a:b:{LONG}".encode()),
                id="colons",
            ),
            pytest.param(f" ci:read:{LONG} ", AdminToken("ci", "read", LONG.encode()), id="spaces"),
            pytest.param("ci:read:" + "x" * 16, AdminToken("ci", "read", b"x" * 16), id="16-chars"),
        ],
    )
    def test_valid_entries(self, entry: str, expected: AdminToken) -> None:
        """Both forms parse; a bare token is named by its position and may write."""
        assert parse_admin_token(entry, 2) == expected

    @pytest.mark.parametrize(
        ("entry", "message"),
        [
            pytest.param("ci:wirte:abc", "the scope must be read or write", id="bad-scope"),
            pytest.param("ci:read:", "the token is empty", id="empty-token"),
            pytest.param(":read:abc", "the name must be", id="empty-name"),
            pytest.param("a b:read:abc", "the name must be", id="space-in-name"),
            pytest.param("abc:def", "the scope must be read or write", id="one-colon"),
            pytest.param("", "entry 1 is empty", id="empty"),
            pytest.param("ci:write:abc", "shorter than 16 characters", id="short"),
            pytest.param("abc", "shorter than 16 characters", id="short-bare"),
        ],
    )
    def test_malformed_entries(self, entry: str, message: str) -> None:
        """A colon means the full form; anything else is refused, the value never echoed."""
        with pytest.raises(TokenFormatError, match=message) as caught:
            parse_admin_token(entry, 1)
        assert "abc" not in str(caught.value)

    def test_repeated_names_are_refused(self) -> None:
        """Two tokens with one name would make the audit log ambiguous."""
        with pytest.raises(TokenFormatError, match=r"the name .ci. is used by more than one"):
            parse_admin_tokens([f"ci:read:{LONG}", f"ci:write:{LONG}x"])

    def test_bare_names_follow_positions(self) -> None:
        """Bare tokens are token-1, token-2... by their place in the list."""
        tokens = parse_admin_tokens([f"{LONG}1", f"ci:read:{LONG}2", f"{LONG}3"])
        assert [t.name for t in tokens] == ["token-1", "ci", "token-3"]

    def test_generated_tokens_are_bare(self) -> None:
        """The first-run token has no colon, so it stays a bare write token."""
        [token] = parse_admin_tokens([new_admin_token()])
        assert (token.name, token.scope) == ("token-1", "write")

    def test_secret_is_not_in_repr(self) -> None:
        """A token printed or logged by accident shows its name, not its secret."""
        assert "hunter2" not in repr(AdminToken("ci", "read", b"hunter2"))


class TestAuthenticate:
    TOKENS = (AdminToken("ci", "read", b"read-secret"), AdminToken("ops", "write", b"w-secret"))

    @pytest.mark.parametrize(
        ("presented", "name"),
        [
            pytest.param(b"read-secret", "ci", id="read"),
            pytest.param(b"w-secret", "ops", id="write"),
            pytest.param(b"w-secre", None, id="prefix"),
            pytest.param(b"", None, id="empty"),
            pytest.param(b"\xe9", None, id="non-ascii"),
            pytest.param(None, None, id="none"),
        ],
    )
    def test_finds_the_matching_token(self, presented: bytes | None, name: str | None) -> None:
        """The token whose secret equals the bytes presented, else None."""
        found = authenticate(presented, self.TOKENS)
        assert (found.name if found else None) == name

    def test_no_tokens_configured(self) -> None:
        """With no tokens nothing authenticates."""
        assert authenticate(b"anything", ()) is None


def test_settings_refuse_a_malformed_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A bad ADMIN_TOKENS entry stops start-up with one line naming the variable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADMIN_TOKENS", f"{LONG},ci:reed:secret-value")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith("ADMIN_TOKENS: entry 2: the scope must be")
    assert "secret-value" not in str(caught.value)
