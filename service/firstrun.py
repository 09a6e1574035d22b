"""First start on a laptop: write a `.env` with a generated webhook secret and admin token.

So that `make run` followed by `send-test-event` works at once, and the operator has a secret to
paste into LLMTune. This message is the only place a secret is ever printed.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from service.links import CONSOLE, WEBHOOK_PATH
from service.whsec import WHSEC_PREFIX


def new_webhook_secret() -> str:
    """A `whsec_` secret in the same form LLMTune's dashboard shows."""
    return WHSEC_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def new_admin_token() -> str:
    """A random admin Bearer token."""
    return secrets.token_urlsafe(32)


def write_env(path: Path, *, secret: str | None, token: str | None) -> None:
    """Append the generated values to `path` (created with mode 0600 if missing)."""
    lines = []
    if secret is not None:
        lines.append(f"WEBHOOK_SECRETS={secret}")
    if token is not None:
        lines.append(f"ADMIN_TOKENS={token}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        if path.stat().st_size:
            handle.write("\n")
        handle.write("\n".join(lines) + "\n")
    path.chmod(0o600)


def announce(
    *,
    secret: str | None,
    token: str | None,
    env_path: Path | None,
    out: TextIO,
    show: bool,
) -> None:
    """Tell the operator what was generated: the values themselves only when `show` (a person
    at a terminal), otherwise where they are, so a log collector never keeps them."""
    if secret is None and token is None:
        return
    generated = " and ".join(
        name
        for name, value in (("a webhook secret", secret), ("an admin token", token))
        if value is not None
    )
    if not show:
        where = (
            f"saved to {env_path}; read them there"
            if env_path
            else "not saved and not shown (stderr is not a terminal): set ADMIN_TOKENS to use "
            "the admin API"
        )
        out.write(f"llmtune-receiver generated {generated} ({where})\n")
        out.flush()
        return
    where = f" (saved to {env_path})" if env_path else " (not saved: set ADMIN_TOKENS to keep it)"
    out.write(f"\nllmtune-receiver generated credentials{where}:\n")
    if secret is not None:
        out.write(f"  webhook secret (paste into LLMTune): {secret}\n")
    if token is not None:
        out.write(f"  admin token (Authorization: Bearer ...): {token}\n")
    out.write("\n")
    out.flush()


def stdin_is_terminal() -> bool:
    """True when a person started us from a terminal."""
    return sys.stdin is not None and sys.stdin.isatty()


@dataclass(frozen=True, slots=True)
class Banner:
    """What `serve` says once it listens: where to look, where LLMTune posts, what to run."""

    listening: str
    console: str
    webhooks: str
    next: str
    schema: str

    def text(self) -> str:
        """The lines a person at a terminal reads."""
        return (
            f"llmtune-receiver is ready on {self.listening} ({self.schema})\n"
            f"  console:  {self.console}\n"
            f"  webhooks: {self.webhooks}  (paste into LLMTune)\n"
            f"  next:     {self.next}\n"
        )

    def fields(self) -> dict[str, str]:
        """The same, as fields of one log line."""
        return asdict(self)


def banner(*, base_url: str, public_url: str, schema: str, client_url: str) -> Banner:
    """The banner of a server listening on `base_url` and known outside as `public_url`;
    `client_url` is where the client commands would look without `--url`."""
    try_it = "llmtune-receiver send-test-event"
    if client_url.rstrip("/") != base_url:
        try_it += f" --url {base_url}"
    public = public_url.rstrip("/")
    return Banner(
        listening=base_url,
        console=public + CONSOLE,
        webhooks=public + WEBHOOK_PATH,
        next=try_it,
        schema=schema,
    )
