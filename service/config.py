"""Typed settings, read once from the environment or a `.env` file and validated at start.

A bad value must stop the service with one line naming the variable (`ConfigError`), never with a
traceback or later at request time. Nothing here reads the environment at import.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.admin_tokens import TokenFormatError, parse_admin_tokens
from service.crypto.sealing import EncryptionKeyError, Keyring, keyring_from
from service.whsec import WHSEC_PREFIX

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./llmtune-receiver.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Where links and job callbacks point when PUBLIC_URL is unset and no server is bound here (the
# `worker` command, a bare `create_app`); `serve` puts its bound address in its place.
DEFAULT_PUBLIC_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
ACCEPTED_URL_SCHEMES = (
    "postgresql+asyncpg://",
    "postgresql://",
    "postgres://",
    "sqlite+aiosqlite://",
    "sqlite://",
)


class ConfigError(Exception):
    """A configuration value is unusable; the message names the variable."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the service; field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    webhook_allow_unsigned: bool = False
    admin_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # All request header names and values together; a browser with the console's cookie needs
    # a few kB, a proxy adds a few hundred bytes.
    max_header_bytes: int = Field(default=64 * 1024, ge=8 * 1024, le=1024 * 1024)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    public_url: str = DEFAULT_PUBLIC_URL
    # Where `serve` listens when --host/--port are not given.
    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    routes_file: Path | None = None
    # Event types beyond LLMTune's and our own that a route may name without a pattern.
    custom_event_types: Annotated[list[str], NoDecode] = Field(default_factory=list)
    run_worker: bool = True
    ingest_queue_limit: int = Field(default=4096, ge=1, le=1_000_000)
    ingest_batch_limit: int = Field(default=256, ge=1, le=10_000)
    worker_concurrency: int = Field(default=16, ge=1, le=1000)
    worker_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    forwarded_allow_ips: str = ""
    llmtune_api_url: str = "https://api.llmtune.io/v1"
    llmtune_api_key: SecretStr | None = None
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "llmtune-receiver"
    job_poll_after: float = Field(default=600.0, ge=1, le=86_400)
    # `purge` keeps a purged event's dedup key this long after it was received (replay defence).
    dedup_retention_days: int = Field(default=400, ge=1, le=36_500)
    # An unsigned delivery to a job's callback URL: a doorbell that polls LLMTune, or a 401.
    job_callbacks_unsigned: Literal["poll", "refuse"] = "poll"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _blank_public_url_is_unset(cls, data: object) -> object:
        # `PUBLIC_URL=` means "not set": left out, it stays out of `model_fields_set`, so
        # `serve` puts the address it binds in its place.
        if isinstance(data, dict):
            value = data.get("public_url")
            if isinstance(value, str) and not value.strip():
                return {key: item for key, item in data.items() if key != "public_url"}
        return data

    @field_validator(
        "webhook_secrets", "admin_tokens", "encryption_keys", "custom_event_types", mode="before"
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("webhook_secrets")
    @classmethod
    def _secrets_not_empty(cls, value: list[SecretStr]) -> list[SecretStr]:
        for secret in value:
            raw = secret.get_secret_value()
            if raw == WHSEC_PREFIX:
                raise ValueError("a secret is empty after the whsec_ prefix")
        return value

    @field_validator("admin_tokens")
    @classmethod
    def _tokens_parse(cls, value: list[SecretStr]) -> list[SecretStr]:
        # Checked here so a malformed entry stops start-up; bootstrap parses them again.
        try:
            parse_admin_tokens([token.get_secret_value() for token in value])
        except TokenFormatError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _keys_parse(cls, value: list[SecretStr]) -> list[SecretStr]:
        if value:
            try:
                keyring_from([key.get_secret_value() for key in value])
            except EncryptionKeyError as exc:
                raise ValueError(str(exc)) from None
        return value

    def keyring(self) -> Keyring | None:
        """The keys of ENCRYPTION_KEYS (first seals), or None when encryption at rest is off."""
        if not self.encryption_keys:
            return None
        return keyring_from([key.get_secret_value() for key in self.encryption_keys])

    @field_validator("llmtune_api_key", "otel_exporter_otlp_endpoint", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `LLMTUNE_API_KEY=` in a .env or a manifest means "not set", not "an empty key".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, value: str) -> str:
        # uvicorn takes a comma list of addresses, networks or `*`; check each here so a typo
        # stops start-up instead of silently trusting nobody (or everybody).
        for part in value.split(","):
            if part.strip() not in ("", "*"):
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"{part.strip()!r} is not an IP address or network") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @property
    def public_url_given(self) -> bool:
        """True when PUBLIC_URL was set (not blank) in the environment or `.env`."""
        return "public_url" in self.model_fields_set

    @property
    def is_sqlite(self) -> bool:
        """True when the store is the embedded SQLite file."""
        return self.database_url.startswith("sqlite")


def normalize_database_url(url: str) -> str:
    """Map the URL forms operators paste (`postgres://`) onto the async drivers we ship."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    raise ValueError(f"must start with one of {', '.join(ACCEPTED_URL_SCHEMES)}")


def database_location(url: str) -> str:
    """Where DATABASE_URL points, for error messages: the SQLite file's absolute path, or the
    PostgreSQL host and database (never the password)."""
    scheme, _, rest = url.partition("://")
    if scheme.startswith("sqlite"):
        path = rest.removeprefix("/").split("?", 1)[0]
        if not path or path == ":memory:":
            return "an in-memory SQLite database"
        return f"SQLite file {Path(path).resolve()}"
    where = rest.rpartition("@")[2].split("?", 1)[0]
    return f"PostgreSQL at {where}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and `.env`; raise `ConfigError` naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}") from None
