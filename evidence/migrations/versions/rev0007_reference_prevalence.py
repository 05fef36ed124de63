"""The reference prevalence of each device version, kept in the store like its claims.

The prevalence of the reference (validation) population at which a version's scores are
calibrated; ``registry publish`` puts it in the version's ``RegistryEntry``. Nullable (NULL:
unknown, as for every version added before this revision), and when given strictly between
0 and 1, as the contract requires, so a stored value can always be published.

SQLite adds the column, with its CHECK, by ``ALTER TABLE ... ADD COLUMN`` (no table copy,
which ``device_versions``, referenced by four tables, could not survive with foreign keys
enforced); PostgreSQL adds the column, then the named constraint.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

# The full name; op.f() keeps the naming convention from prefixing it again.
CHECK_NAME = "ck_device_versions_reference_prevalence_between_0_and_1"
CHECK_CONDITION = "reference_prevalence > 0 AND reference_prevalence < 1"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE device_versions ADD COLUMN reference_prevalence FLOAT "
            f"CONSTRAINT {CHECK_NAME} CHECK ({CHECK_CONDITION})"
        )
        return
    op.add_column("device_versions", sa.Column("reference_prevalence", sa.Float(), nullable=True))
    op.create_check_constraint(op.f(CHECK_NAME), "device_versions", CHECK_CONDITION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite >= 3.35 drops a column in place, with the CHECK that belongs to it.
        op.execute("ALTER TABLE device_versions DROP COLUMN reference_prevalence")
        return
    op.drop_constraint(op.f(CHECK_NAME), "device_versions", type_="check")
    op.drop_column("device_versions", "reference_prevalence")
