"""Alembic, driven from code: upgrade to head, and the head revisions a running app expects.

Called from the CLI and test fixtures, outside any running event loop: the async `env.py` runs
its own loop with `asyncio.run`.
"""

from __future__ import annotations

from pathlib import Path

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


def upgrade(database_url: str) -> None:
    """Apply every migration up to head."""
    command.upgrade(alembic_config(database_url), "head")


def heads() -> frozenset[str]:
    """The head revisions of the migrations shipped with this code."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(script.get_heads())


def known_revisions() -> frozenset[str]:
    """Every revision shipped with this code (a database at none of them is newer than it)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(revision.revision for revision in script.walk_revisions())
