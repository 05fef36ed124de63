"""Where a CUSUM's change began: ``change_began_at`` on alerts and their recurrences.

The ``Alert`` contract carries, for a CUSUM's alert, the event time of the case after the
statistic last sat at zero (Page's estimate of when the change began). The store kept every
other field of a raised alert and dropped this one, so ``alerts show`` and the report could
give the charted cases back but not the time. Nullable on both tables (NULL: no estimate,
as for other tests' alerts and every alert stored before this revision); no data moves.

Both tables take the column by ``ALTER TABLE ... ADD COLUMN`` on SQLite too (no table copy,
which ``alerts``, referenced by ``alert_recurrences``, could not survive with foreign keys
enforced). Downgrading drops the column and the estimates with it; each alert's
``alert.raise`` or ``alert.recur`` audit entry keeps the alert whole, estimate included.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None

AWARE = sa.DateTime(timezone=True)
TABLES = ("alerts", "alert_recurrences")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("change_began_at", AWARE, nullable=True))


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (no index or constraint names it).
    for table in TABLES:
        op.drop_column(table, "change_began_at")
