"""Schema migrations of the evidence store, run from the installed package.

``python -m evidence.migrate --ini`` prints the packaged ``alembic.ini`` so the
stock ``alembic`` command works too (``alembic -c <that> upgrade head``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported where a migration runs: commands that only read never load it.

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
INI_PATH = MIGRATIONS_DIR / "alembic.ini"


def make_engine(url: str) -> Engine:
    """An engine for the evidence store; on SQLite, with foreign keys enforced."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _enforce_sqlite_foreign_keys)
    return engine


def _enforce_sqlite_foreign_keys(connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config() -> Config:
    """Alembic configuration pointing at the packaged migrations (no ini file needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None if it was never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` in one transaction."""
    from alembic import command

    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def main(argv: list[str]) -> int:
    if argv == ["--ini"]:
        print(INI_PATH)
        return 0
    print("usage: python -m evidence.migrate --ini", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
