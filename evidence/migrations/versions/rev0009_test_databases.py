"""Standard test databases: frozen, versioned case lists with their reference standard.

A claim names the database version it was measured on; ``postmarket testdb`` imports a
version once (content-hashed, audited) and compares versions (added, removed, relabelled).
The revision adds two tables and moves no data; downgrading drops them (their
``testdb.import`` audit entries remain).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "test_databases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("case_count", sa.Integer(), nullable=False),
        sa.Column("strata", sa.JSON(), nullable=False),
        sa.Column("based_on", sa.String(64), nullable=True),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("imported_at", AWARE, nullable=False),
        sa.Column("imported_by", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_test_databases"),
        sa.UniqueConstraint("name", "version", name="uq_test_databases_name_version"),
    )
    op.create_table(
        "test_database_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("database_id", sa.Integer(), nullable=False),
        sa.Column("case_pseudonym", sa.String(128), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("truth_source", sa.String(32), nullable=False),
        sa.Column("first_read", sa.String(16), nullable=True),
        sa.Column("second_read", sa.String(16), nullable=True),
        sa.Column("adjudication", sa.String(16), nullable=True),
        sa.Column("strata", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["database_id"],
            ["test_databases.id"],
            name="fk_test_database_cases_database_id_test_databases",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_test_database_cases"),
        sa.UniqueConstraint(
            "database_id",
            "case_pseudonym",
            name="uq_test_database_cases_database_id_case_pseudonym",
        ),
    )
    op.create_index("ix_test_database_cases_database_id", "test_database_cases", ["database_id"])


def downgrade() -> None:
    op.drop_index("ix_test_database_cases_database_id", table_name="test_database_cases")
    op.drop_table("test_database_cases")
    op.drop_table("test_databases")
