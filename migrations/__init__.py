"""Alembic migrations; installed as the package `service.migrations` (see pyproject.toml)."""
