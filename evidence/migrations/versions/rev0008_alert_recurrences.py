"""Alert recurrences: a stream's detector signalling again while its alert is unresolved.

A persistent change (a site's sensitivity staying below its claim) makes a reset CUSUM or a
windowed test signal again every few hundred cases. Each signal is an alert with its own
id; stored as a new open alert each, they flood triage. From this revision the store keeps
such a signal whole in ``alert_recurrences``, pointing at the unresolved alert it recurs.
Alerts stored before it stay alerts: the revision adds, and moves no data.

The index on ``alerts`` finds the unresolved alert of a stream and detector when a signal
arrives. Downgrading drops the recurrences; their ``alert.recur`` audit entries remain.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

AWARE = sa.DateTime(timezone=True)
STREAM_DETECTOR_STATUS = ["device_key", "device_version", "site_key", "task", "detector", "status"]


def upgrade() -> None:
    op.create_table(
        "alert_recurrences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.String(36), nullable=False),
        sa.Column("recurred_id", sa.Integer(), nullable=False),
        sa.Column("statistic", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("first_case_time", AWARE, nullable=False),
        sa.Column("last_case_time", AWARE, nullable=False),
        sa.Column("raised_at", AWARE, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["recurred_id"], ["alerts.id"], name="fk_alert_recurrences_recurred_id_alerts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alert_recurrences"),
        sa.UniqueConstraint("alert_id", name="uq_alert_recurrences_alert_id"),
    )
    op.create_index("ix_alert_recurrences_recurred_id", "alert_recurrences", ["recurred_id"])
    op.create_index("ix_alerts_stream_detector_status", "alerts", STREAM_DETECTOR_STATUS)


def downgrade() -> None:
    op.drop_index("ix_alerts_stream_detector_status", table_name="alerts")
    op.drop_index("ix_alert_recurrences_recurred_id", table_name="alert_recurrences")
    op.drop_table("alert_recurrences")
