"""Alembic revisions, applied in order by `llmtune-receiver migrate`."""
