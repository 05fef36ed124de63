"""Registry, alerts and the append-only audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-03-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

AWARE = sa.DateTime(timezone=True)

APPEND_ONLY_POSTGRESQL = (
    """
    CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_entries is append-only: % refused', TG_OP;
    END
    $$
    """,
    """
    CREATE TRIGGER audit_entries_append_only
    BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()
    """,
    """
    CREATE TRIGGER audit_entries_no_truncate
    BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only()
    """,
)

APPEND_ONLY_SQLITE = tuple(
    f"""
    CREATE TRIGGER audit_entries_no_{operation.lower()}
    BEFORE {operation} ON audit_entries
    BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only: {operation} refused'); END
    """
    for operation in ("UPDATE", "DELETE")
)


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_key", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("manufacturer", sa.String(256), nullable=False),
        sa.Column("created_at", AWARE, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.UniqueConstraint("device_key", name="uq_devices_device_key"),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name="fk_tasks_device_id_devices"),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.UniqueConstraint("device_id", "name", name="uq_tasks_device_id_name"),
    )
    op.create_table(
        "device_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("major", sa.Integer(), nullable=False),
        sa.Column("minor", sa.Integer(), nullable=False),
        sa.Column("corrective", sa.Integer(), nullable=False),
        sa.Column("bugfix", sa.Integer(), nullable=False),
        sa.Column("created_at", AWARE, nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name="fk_device_versions_device_id_devices"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_device_versions"),
        sa.UniqueConstraint("device_id", "version", name="uq_device_versions_device_id_version"),
    )
    op.create_table(
        "registrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("regulator", sa.String(64), nullable=False),
        sa.Column("reference", sa.String(128), nullable=False),
        sa.Column("registered_on", sa.Date(), nullable=True),
        sa.Column("created_at", AWARE, nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["device_versions.id"],
            name="fk_registrations_version_id_device_versions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_registrations"),
        sa.UniqueConstraint("version_id", name="uq_registrations_version_id"),
    )
    op.create_table(
        "claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("ci_lower", sa.Float(), nullable=False),
        sa.Column("ci_upper", sa.Float(), nullable=False),
        sa.Column("test_database", sa.String(256), nullable=False),
        sa.Column("intended_acquisitions", sa.JSON(), nullable=False),
        sa.Column("intended_populations", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.id"],
            name="fk_claims_registration_id_registrations",
        ),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_claims_task_id_tasks"),
        sa.PrimaryKeyConstraint("id", name="pk_claims"),
        sa.UniqueConstraint(
            "registration_id", "task_id", "metric", name="uq_claims_registration_id_task_id_metric"
        ),
    )
    op.create_table(
        "change_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("training_fraction_changed", sa.Float(), nullable=True),
        sa.Column("created_at", AWARE, nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["device_versions.id"],
            name="fk_change_records_version_id_device_versions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_change_records"),
        sa.UniqueConstraint("version_id", name="uq_change_records_version_id"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.String(36), nullable=False),
        sa.Column("device_key", sa.String(128), nullable=False),
        sa.Column("device_version", sa.String(32), nullable=False),
        sa.Column("site_key", sa.String(128), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("detector", sa.String(128), nullable=False),
        sa.Column("statistic", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("first_case_time", AWARE, nullable=False),
        sa.Column("last_case_time", AWARE, nullable=False),
        sa.Column("raised_at", AWARE, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("acknowledged_at", AWARE, nullable=True),
        sa.Column("acknowledgement", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.Column("resolved_at", AWARE, nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("alert_id", name="uq_alerts_alert_id"),
    )
    op.create_table(
        "audit_entries",
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("recorded_at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_audit_entries"),
        sa.UniqueConstraint("previous_hash", name="uq_audit_entries_previous_hash"),
        sa.UniqueConstraint("entry_hash", name="uq_audit_entries_entry_hash"),
    )
    dialect = op.get_bind().dialect.name
    statements = APPEND_ONLY_POSTGRESQL if dialect == "postgresql" else APPEND_ONLY_SQLITE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    # Dropping the table drops its triggers; the PostgreSQL function goes separately.
    for table in (
        "audit_entries",
        "alerts",
        "change_records",
        "claims",
        "registrations",
        "device_versions",
        "tasks",
        "devices",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_entries_append_only()")
