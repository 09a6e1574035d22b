"""Settings parsing: comma lists, URL forms, and one-line errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import ACCEPTED_URL_SCHEMES, ConfigError, load_settings
from service.crypto.sealing import parse_key


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "DATABASE_URL",
        "WEBHOOK_SECRETS",
        "ADMIN_TOKENS",
        "MAX_BODY_BYTES",
        "MAX_HEADER_BYTES",
        "LOG_LEVEL",
        "FORWARDED_ALLOW_IPS",
        "BODY_TIMEOUT_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults() -> None:
    """With nothing set: embedded SQLite, no secrets, 1 MiB body cap, 64 KiB of headers."""
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///./llmtune-receiver.db"
    assert settings.webhook_secrets == []
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.max_header_bytes == 64 * 1024
    assert settings.is_sqlite


def test_comma_separated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """WEBHOOK_SECRETS is a comma list, spaces ignored (rotation keeps two)."""
    monkeypatch.setenv("WEBHOOK_SECRETS", " whsec_a , plain ,")
    secrets = [s.get_secret_value() for s in load_settings().webhook_secrets]
    assert secrets == ["whsec_a", "plain"]


def test_secrets_are_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """A settings object printed by accident does not show secrets."""
    monkeypatch.setenv("WEBHOOK_SECRETS", "whsec_topsecret")
    assert "topsecret" not in repr(load_settings())


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_url_forms(monkeypatch: pytest.MonkeyPatch, given: str, expected: str) -> None:
    """Pasted URL forms map onto the async drivers."""
    monkeypatch.setenv("DATABASE_URL", given)
    assert load_settings().database_url == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBHOOK_SECRETS", "whsec_"),
        ("WEBHOOK_SECRETS", "good,whsec_"),
        ("DATABASE_URL", "mysql://u@h/db"),
        ("MAX_BODY_BYTES", "lots"),
        ("MAX_BODY_BYTES", "10"),
        ("MAX_HEADER_BYTES", "1024"),
        ("MAX_HEADER_BYTES", "99999999"),
        ("LOG_LEVEL", "chatty"),
        ("WEBHOOK_ALLOW_UNSIGNED", "maybe"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.1,proxy.internal"),
        ("BODY_TIMEOUT_SECONDS", "0"),
        ("ENCRYPTION_KEYS", "c2hvcnQ="),
        ("ENCRYPTION_KEYS", "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=,not base64!"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """A bad value stops start-up with a message that begins with the variable's name."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{name}: ")
    assert "\n" not in message


def test_encryption_keys_errors_never_show_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The message names the key by position; the ring keeps the given order, first sealing."""
    good = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
    bad = "c2VjcmV0LWJ1dC10b28tc2hvcnQ="
    monkeypatch.setenv("ENCRYPTION_KEYS", f"{good},{bad}")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == "ENCRYPTION_KEYS: key 2: must encode 32 bytes, not 20"
    other = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="
    monkeypatch.setenv("ENCRYPTION_KEYS", f" {other} , {good} ")
    keyring = load_settings().keyring()
    assert keyring is not None
    assert [key.id for key in keyring.keys] == [parse_key(other).id, parse_key(good).id]
    monkeypatch.setenv("ENCRYPTION_KEYS", "")
    assert load_settings().keyring() is None


def test_database_url_error_lists_every_accepted_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unusable URL is answered with every scheme that would have worked."""
    monkeypatch.setenv("DATABASE_URL", "mysql://u@h/db")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    for scheme in ACCEPTED_URL_SCHEMES:
        assert scheme in str(caught.value)


@pytest.mark.parametrize("value", ["", "*", "127.0.0.1", "10.0.0.0/8, ::1"])
def test_forwarded_allow_ips_forms(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Addresses, networks, `*` or nothing (trust no proxy, the default)."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", value)
    assert load_settings().forwarded_allow_ips == value


@pytest.mark.parametrize("variable", ["LLMTUNE_API_KEY", "OTEL_EXPORTER_OTLP_ENDPOINT"])
@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_means_unset(monkeypatch: pytest.MonkeyPatch, variable: str, blank: str) -> None:
    """`LLMTUNE_API_KEY=` turns jobs off (no client with an empty key); same for tracing."""
    monkeypatch.setenv(variable, blank)
    settings = load_settings()
    assert settings.llmtune_api_key is None
    assert settings.otel_exporter_otlp_endpoint is None
