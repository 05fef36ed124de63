"""A withdrawn claim stays in ``claims``, marked withdrawn with when, by whom and why.

Until now ``registry withdraw-claim`` deleted the row (its audit entry kept a copy); a
regulator reading the registry needs the claim itself. The revision adds ``withdrawn_at``,
``withdrawn_by`` and ``withdrawn_why`` (NULL: a current claim, as every claim stored before
it) and narrows the one-claim-per-task-and-metric rule to current claims (a partial unique
index), so a claim withdrawn and added again is two rows. Downgrading deletes the withdrawn
rows, which the older schema has no place for; their ``registry.withdraw_claim`` audit
entries keep them whole.

SQLite copies ``claims`` to drop its unique constraint (batch mode; no table references
``claims``, so the copy is safe with foreign keys enforced).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

AWARE = sa.DateTime(timezone=True)
UNIQUE = "uq_claims_registration_id_task_id_metric"
CURRENT_UNIQUE = "uq_claims_current_registration_id_task_id_metric"
CURRENT = sa.text("withdrawn_at IS NULL")
COLUMNS = ["registration_id", "task_id", "metric"]


def upgrade() -> None:
    with op.batch_alter_table("claims") as batch:
        batch.add_column(sa.Column("withdrawn_at", AWARE, nullable=True))
        batch.add_column(sa.Column("withdrawn_by", sa.String(256), nullable=True))
        batch.add_column(sa.Column("withdrawn_why", sa.Text(), nullable=True))
        batch.drop_constraint(UNIQUE, type_="unique")
    op.create_index(
        CURRENT_UNIQUE,
        "claims",
        COLUMNS,
        unique=True,
        sqlite_where=CURRENT,
        postgresql_where=CURRENT,
    )


def downgrade() -> None:
    op.drop_index(CURRENT_UNIQUE, "claims")
    op.execute("DELETE FROM claims WHERE withdrawn_at IS NOT NULL")
    with op.batch_alter_table("claims") as batch:
        batch.create_unique_constraint(UNIQUE, COLUMNS)
        batch.drop_column("withdrawn_why")
        batch.drop_column("withdrawn_by")
        batch.drop_column("withdrawn_at")
