"""An index covering the fleet review's per-site counts of field outcomes.

The evidence sink's periodic review aggregates outcomes per device version, task and site
(confusion and design counts, first and last prediction time). With every column it reads
in one index, led by the grouping, the aggregate is an index-only scan with no sort, instead
of a lookup of every outcome row.

Building the index on a large table blocks outcome writes until it is done (the migration
runs in one transaction, so not ``CONCURRENTLY``); the sink's consumers wait meanwhile.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

SITE_COUNTS_COLUMNS = [
    "device_key",
    "device_version",
    "task",
    "site_key",
    "label",
    "decision",
    "study_design",
    "prediction_time",
]


def upgrade() -> None:
    op.create_index("ix_field_outcomes_site_counts", "field_outcomes", SITE_COUNTS_COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_field_outcomes_site_counts", table_name="field_outcomes")
