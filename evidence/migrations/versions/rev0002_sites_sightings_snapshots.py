"""Sites, first sightings of versions at sites, and performance snapshots.

Revision ID: 0002
Revises: 0001
Create Date: 2026-03-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_key", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("created_at", AWARE, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sites"),
        sa.UniqueConstraint("site_key", name="uq_sites_site_key"),
    )
    op.create_table(
        "version_sightings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("first_seen_at", AWARE, nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["device_versions.id"],
            name="fk_version_sightings_version_id_device_versions",
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name="fk_version_sightings_site_id_sites"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_version_sightings"),
        sa.UniqueConstraint(
            "version_id", "site_id", "task", name="uq_version_sightings_version_id_site_id_task"
        ),
    )
    op.create_table(
        "performance_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("stratum", sa.String(256), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("ci_lower", sa.Float(), nullable=False),
        sa.Column("ci_upper", sa.Float(), nullable=False),
        sa.Column("window_start", AWARE, nullable=False),
        sa.Column("window_end", AWARE, nullable=False),
        sa.Column("study_design", sa.String(16), nullable=False),
        sa.Column("followup_completeness", sa.Float(), nullable=False),
        sa.Column("recorded_at", AWARE, nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["device_versions.id"],
            name="fk_performance_snapshots_version_id_device_versions",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name="fk_performance_snapshots_task_id_tasks"
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name="fk_performance_snapshots_site_id_sites"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_performance_snapshots"),
    )


def downgrade() -> None:
    for table in ("performance_snapshots", "version_sightings", "sites"):
        op.drop_table(table)
