"""An index on the audit trail's action and subject.

Every query that reads audit entries by meaning rather than in order selects them by
action first, then by subject: a trend plan's record and amendments (``plan.record``,
``plan.amend`` on ``plan:<device>:<name>``, for ``plan show``, ``plan trend`` and the PSUR),
a device's re-baselining decisions (``stream.rebaseline``) and review decisions
(``stream.review``) for the report. Without an index each read the whole trail, which
grows with every alert's raise, acknowledgement and resolution. Building it holds the
audit trail's writes for the migration's few seconds (one transaction, not
``CONCURRENTLY``); the entries themselves are untouched, so the hash chain still verifies.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_audit_entries_action_subject", "audit_entries", ["action", "subject"])


def downgrade() -> None:
    op.drop_index("ix_audit_entries_action_subject", table_name="audit_entries")
