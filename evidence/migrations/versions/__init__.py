"""Alembic revisions of the evidence store, oldest first."""
