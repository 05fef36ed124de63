"""The standard test database gate: each run of a candidate version on a database version,
and its verdict rows (a claim's metric per stratum, judged or reported).

``postmarket testdb run`` writes one run with its rows and one ``testdb.gate`` audit entry;
the registry asks for a version's latest run when the policy requires a passing gate. The
revision adds two tables and moves no data; downgrading drops them (their ``testdb.gate``
audit entries remain).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "test_database_gate_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("device_key", sa.String(128), nullable=False),
        sa.Column("device_version", sa.String(32), nullable=False),
        sa.Column("database_name", sa.String(128), nullable=False),
        sa.Column("database_version", sa.String(64), nullable=False),
        sa.Column("database_sha256", sa.String(64), nullable=False),
        sa.Column("predictions_sha256", sa.String(64), nullable=False),
        sa.Column("predictions_source", sa.String(256), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("run_at", AWARE, nullable=False),
        sa.Column("run_by", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_test_database_gate_runs"),
        sa.UniqueConstraint("run_id", name="uq_test_database_gate_runs_run_id"),
    )
    op.create_index(
        "ix_test_database_gate_runs_version",
        "test_database_gate_runs",
        ["device_key", "device_version", "run_at"],
    )
    op.create_table(
        "test_database_gate_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("stratum", sa.String(64), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=True),
        sa.Column("estimate", sa.Float(), nullable=True),
        sa.Column("lower", sa.Float(), nullable=True),
        sa.Column("upper", sa.Float(), nullable=True),
        sa.Column("interval", sa.String(32), nullable=False),
        sa.Column("acceptable", sa.Float(), nullable=True),
        sa.Column("criterion", sa.String(64), nullable=False),
        sa.Column("met", sa.Boolean(), nullable=True),
        sa.Column("funnel", sa.String(8), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["test_database_gate_runs.id"],
            name="fk_test_database_gate_rows_run_id_test_database_gate_runs",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_test_database_gate_rows"),
    )
    op.create_index("ix_test_database_gate_rows_run_id", "test_database_gate_rows", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_test_database_gate_rows_run_id", table_name="test_database_gate_rows")
    op.drop_table("test_database_gate_rows")
    op.drop_index("ix_test_database_gate_runs_version", table_name="test_database_gate_runs")
    op.drop_table("test_database_gate_runs")
