"""The two blinded reads behind each field outcome, for the reader-agreement section.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("field_outcomes") as table:
        table.add_column(sa.Column("first_read", sa.String(16), nullable=True))
        table.add_column(sa.Column("second_read", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("field_outcomes") as table:
        table.drop_column("second_read")
        table.drop_column("first_read")
