"""What every command shares that costs nothing to import: settings or a one-line exit, and the
bounds of the bulk commands' batches.

The admin client commands and the parser import this module; it must not import the store, the
web stack or the service (the `cli-light` import contract holds it to that).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from service.config import Settings

# The service the client commands talk to when neither --url nor LLMTUNE_RECEIVER_URL says.
DEFAULT_RECEIVER_URL = "http://127.0.0.1:8000"
RECEIVER_URL_VARIABLE = "LLMTUNE_RECEIVER_URL"
ENV_FILE = Path(".env")

# Bulk commands (`purge`, `rotate-keys`): rows per transaction. Bounded so that a batch stays a
# short lock and its id list fits any driver's parameter limit.
DEFAULT_BATCH = 500
MAX_BATCH = 10_000


def settings_or_exit() -> Settings:
    """The settings, or exit 2 with one line naming what is wrong."""
    # Imported here: pydantic-settings costs more CPU than the rest of a client command, which
    # reads settings only when an option (`--token`, `--secret`) was left out.
    from service.config import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        print(f"llmtune-receiver: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def batch_size_or_exit(value: int) -> int:
    """`--batch-size`, or exit 2 with one line when it is outside 1..MAX_BATCH."""
    if not 1 <= value <= MAX_BATCH:
        fail(2, f"--batch-size: must be from 1 to {MAX_BATCH}: {value}")
    return value


def fail(code: int, message: str) -> NoReturn:
    """Print `llmtune-receiver: message` on stderr and exit with `code`."""
    print(f"llmtune-receiver: {message}", file=sys.stderr)
    raise SystemExit(code)


def receiver_url(env_file: Path = ENV_FILE) -> str:
    """The running service's base URL: LLMTUNE_RECEIVER_URL from the environment, else from
    `env_file`, else `DEFAULT_RECEIVER_URL`."""
    value = os.environ.get(RECEIVER_URL_VARIABLE, "").strip()
    if not value and env_file.is_file():
        # python-dotenv reads the file as pydantic-settings does for the service's own settings,
        # without loading pydantic-settings.
        from dotenv import dotenv_values

        value = (dotenv_values(env_file).get(RECEIVER_URL_VARIABLE) or "").strip()
    return value or DEFAULT_RECEIVER_URL
