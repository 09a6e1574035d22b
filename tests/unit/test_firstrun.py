"""First-run credentials: a `.env` only its owner can read, appended to, never rewritten."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from service.firstrun import announce, new_admin_token, new_webhook_secret, write_env


def test_generated_values_have_their_forms() -> None:
    """The secret looks like LLMTune's (`whsec_`), tokens are long and never repeat."""
    assert new_webhook_secret().startswith("whsec_")
    assert len(new_webhook_secret()) > 30
    assert new_admin_token() != new_admin_token()


def test_write_env_creates_owner_only_file(tmp_path: Path) -> None:
    """A new .env is mode 0600 and holds both values."""
    path = tmp_path / ".env"
    write_env(path, secret="whsec_x", token="tok")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "WEBHOOK_SECRETS=whsec_x\nADMIN_TOKENS=tok\n"


def test_write_env_appends_to_existing_file(tmp_path: Path) -> None:
    """An existing .env keeps its lines; only what was generated is added."""
    path = tmp_path / ".env"
    path.write_text("LOG_LEVEL=debug")
    path.chmod(0o644)
    write_env(path, secret=None, token="tok")
    assert path.read_text() == "LOG_LEVEL=debug\nADMIN_TOKENS=tok\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_announce_at_a_terminal_prints_each_value_once() -> None:
    """A person at a terminal sees each generated value once, and whether it was saved."""
    out = io.StringIO()
    announce(secret="whsec_s", token="t0k3n", env_path=Path(".env"), out=out, show=True)
    text = out.getvalue()
    assert text.count("whsec_s") == 1
    assert text.count("t0k3n") == 1
    assert "saved to .env" in text


@pytest.mark.parametrize("env_path", [Path(".env"), None])
def test_announce_off_a_terminal_never_prints_values(env_path: Path | None) -> None:
    """Off a terminal (a log collector), only where the values are is said, never the values."""
    out = io.StringIO()
    announce(secret="whsec_s", token="t0k3n", env_path=env_path, out=out, show=False)
    text = out.getvalue()
    assert "whsec_s" not in text
    assert "t0k3n" not in text
    assert ("saved to .env" in text) is (env_path is not None)
    assert text.count("\n") == 1


def test_announce_nothing_generated_says_nothing() -> None:
    """With nothing generated there is nothing to say."""
    quiet = io.StringIO()
    announce(secret=None, token=None, env_path=None, out=quiet, show=True)
    assert quiet.getvalue() == ""
