"""Alembic environment of the evidence store.

Uses the connection handed over by :func:`evidence.migrate.upgrade` when there
is one; otherwise (the ``alembic`` command line) the ``sqlalchemy.url`` of the ini file, or
the configured evidence store (``POSTMARKET_EVIDENCE_URL``, else ``<home>/evidence.db``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from evidence.models import Base


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from postmarket.config import Settings

        url = Settings().evidence_database_url
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the evidence store migrations run online only (against a database)")
main()
