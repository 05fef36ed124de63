"""Indexes covering the snapshot refresh's per-week counts of field outcomes and predictions.

The evidence sink's periodic snapshot refresh counts outcomes (by label and call) and
predictions per device version, task, site, study design and ISO week in one GROUP BY each:
of every week at start-up, then of the few weeks that received events since the last
refresh. Led by the device and the prediction time, and holding every other column the
counts read, each index serves both: an index-only scan of the device's entries, or of
just those weeks' time ranges. Before, the refresh ran one query per week of history,
each reading every prediction row of the device (``field_predictions`` was indexed on
``device_key`` only).

Building the indexes on large tables blocks outcome and prediction writes until they are
done (the migration runs in one transaction, so not ``CONCURRENTLY``); the sink's consumers
wait meanwhile.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

STREAM_COLUMNS = ["device_version", "task", "site_key", "study_design"]


def upgrade() -> None:
    op.create_index(
        "ix_field_outcomes_week_counts",
        "field_outcomes",
        ["device_key", "prediction_time", *STREAM_COLUMNS, "label", "decision"],
    )
    op.create_index(
        "ix_field_predictions_week_counts",
        "field_predictions",
        ["device_key", "prediction_time", *STREAM_COLUMNS],
    )


def downgrade() -> None:
    op.drop_index("ix_field_predictions_week_counts", table_name="field_predictions")
    op.drop_index("ix_field_outcomes_week_counts", table_name="field_outcomes")
