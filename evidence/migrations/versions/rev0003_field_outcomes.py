"""Field outcomes and predictions, written by the evidence sink from the pipeline's topics.

Revision ID: 0003
Revises: 0002
Create Date: 2026-03-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "field_outcomes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("device_key", sa.String(128), nullable=False),
        sa.Column("device_version", sa.String(32), nullable=False),
        sa.Column("site_key", sa.String(128), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("case_pseudonym", sa.String(128), nullable=False),
        sa.Column("prediction_event_id", sa.String(36), nullable=False),
        sa.Column("prediction_time", AWARE, nullable=False),
        sa.Column("truth_time", AWARE, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("operating_threshold", sa.Float(), nullable=False),
        sa.Column("truth_source", sa.String(32), nullable=False),
        sa.Column("study_design", sa.String(16), nullable=False),
        sa.Column("modality", sa.String(16), nullable=True),
        sa.Column("manufacturer", sa.String(64), nullable=True),
        sa.Column("model", sa.String(64), nullable=True),
        sa.Column("slice_thickness_mm", sa.Float(), nullable=True),
        sa.Column("slice_thickness_band", sa.String(16), nullable=True),
        sa.Column("recorded_at", AWARE, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_field_outcomes"),
        sa.UniqueConstraint("event_id", name="uq_field_outcomes_event_id"),
    )
    op.create_index("ix_field_outcomes_device_key", "field_outcomes", ["device_key"])
    op.create_table(
        "field_predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("device_key", sa.String(128), nullable=False),
        sa.Column("device_version", sa.String(32), nullable=False),
        sa.Column("site_key", sa.String(128), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("prediction_time", AWARE, nullable=False),
        sa.Column("study_design", sa.String(16), nullable=False),
        sa.Column("recorded_at", AWARE, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_field_predictions"),
        sa.UniqueConstraint("event_id", name="uq_field_predictions_event_id"),
    )
    op.create_index("ix_field_predictions_device_key", "field_predictions", ["device_key"])


def downgrade() -> None:
    op.drop_index("ix_field_predictions_device_key", table_name="field_predictions")
    op.drop_table("field_predictions")
    op.drop_index("ix_field_outcomes_device_key", table_name="field_outcomes")
    op.drop_table("field_outcomes")
