"""Alembic, driven from code: upgrade to head, and the head revisions a running app expects.

Called from the CLI and test fixtures, outside any running event loop: the async `env.py` runs
its own loop with `asyncio.run`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory


def migrations_dir() -> Path:
    """The Alembic scripts: packaged in the wheel, else the source checkout's `migrations/`."""
    # An installed wheel holds service/migrations (mapped from the top-level folder by pyproject).
    packaged = Path(__file__).resolve().parents[1] / "migrations"
    if (packaged / "env.py").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at our migrations and `database_url`."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # `%` is ConfigParser interpolation syntax; URLs with escaped passwords contain it.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@dataclass(frozen=True, slots=True)
class Upgraded:
    """What an upgrade did: the schema it left (the head revisions) and how many it applied."""

    schema: str
    applied: int

    def summary(self) -> str:
        """One line: `schema 0013, 13 applied` or `schema 0013, up to date`."""
        done = f"{self.applied} applied" if self.applied else "up to date"
        return f"schema {self.schema}, {done}"


def upgrade(database_url: str, *, quiet: bool = False) -> Upgraded:
    """Apply every migration up to head; `quiet` keeps Alembic's own INFO lines out of the log."""
    applied: list[str] = []

    def count(*, step: Any, **_: Any) -> None:
        applied.append(str(step.up_revision_id))

    config = alembic_config(database_url)
    # migrations/env.py hands these to Alembic's `on_version_apply`: each called per revision.
    config.attributes["on_version_apply"] = [count]
    with _quieted(logging.getLogger("alembic") if quiet else None):
        command.upgrade(config, "head")
    return Upgraded(schema=",".join(sorted(heads())), applied=len(applied))


@contextmanager
def _quieted(logger: logging.Logger | None) -> Iterator[None]:
    if logger is None:
        yield
        return
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def heads() -> frozenset[str]:
    """The head revisions of the migrations shipped with this code."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(script.get_heads())


def known_revisions() -> frozenset[str]:
    """Every revision shipped with this code (a database at none of them is newer than it)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(revision.revision for revision in script.walk_revisions())
