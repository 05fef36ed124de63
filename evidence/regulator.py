"""Read-only access for regulators on PostgreSQL: the ``postmarket_regulator`` role.

``postmarket_regulator`` is a group role without login that may connect to the evidence
database and SELECT from every table in its schema (including tables later migrations add),
and nothing else: no INSERT, UPDATE, DELETE, TRUNCATE or DDL. Each regulator logs in as
their own member role, so the database's own logs say who read what::

    postmarket evidence regulator-role --url postgresql+psycopg://owner@host/postmarket \\
        --login nmpa_reviewer --password-file /run/secrets/nmpa_reviewer

Run it as the owner of the evidence tables (it grants on them and sets default privileges
for the tables that owner creates later).
"""

from __future__ import annotations

from sqlalchemy import Engine

REGULATOR_ROLE = "postmarket_regulator"


def _identifier(name: str) -> str:
    """``name`` double-quoted for SQL, refusing anything but a plain lower-case identifier."""
    if not (name.isidentifier() and name.isascii() and name == name.lower()):
        raise ValueError(f"unsafe role name {name!r}: use lower-case letters, digits and _")
    return f'"{name}"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def grant_regulator_read_access(
    engine: Engine,
    *,
    login: str | None = None,
    password: str | None = None,
    schema: str = "public",
) -> None:
    """Create (if missing) the read-only role, grant it SELECT, and optionally a login in it.

    Idempotent: running it again after new migrations grants SELECT on the new tables too.
    """
    if engine.dialect.name != "postgresql":
        raise ValueError(
            f"read-only roles need PostgreSQL; {engine.dialect.name} has no roles (share a "
            "copy of the SQLite file or the report instead)"
        )
    role = _identifier(REGULATOR_ROLE)
    schema_name = _identifier(schema)
    # Identifiers above are validated plain names, so formatting them into DDL is safe.
    statements = [
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{REGULATOR_ROLE}') THEN
                CREATE ROLE {role} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
            END IF;
        END $$
        """,
        f"""
        DO $$ BEGIN
            EXECUTE format('GRANT CONNECT ON DATABASE %I TO {role}', current_database());
        END $$
        """,
        f"GRANT USAGE ON SCHEMA {schema_name} TO {role}",
        f"REVOKE CREATE ON SCHEMA {schema_name} FROM {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema_name} TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema_name} GRANT SELECT ON TABLES TO {role}",
    ]
    if login is not None:
        member = _identifier(login)
        secret = "" if password is None else f" PASSWORD {_literal(password)}"
        statements += [
            f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{login}') THEN
                    CREATE ROLE {member} LOGIN INHERIT;
                END IF;
            END $$
            """,
            f"ALTER ROLE {member} LOGIN{secret}",
            f"GRANT {role} TO {member}",
            # Belt and braces: even a mistaken grant cannot write in this member's sessions.
            f"ALTER ROLE {member} SET default_transaction_read_only = on",
        ]
    with engine.begin() as connection:
        # The DBAPI cursor without parameters, so '%' in a password is not a placeholder.
        cursor = connection.connection.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()
