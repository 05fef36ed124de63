"""``postmarket registry | alerts | audit | evidence | report``: the evidence store from the
shell, one module per command group, assembled here.

Only typer is imported at the top of each group; SQLAlchemy and the store are imported inside
each command, so ``postmarket`` keeps working in a collector install that has no SQLAlchemy.
"""

from __future__ import annotations

from evidence.alerts_cli import alerts_app
from evidence.audit_cli import audit_app
from evidence.cli_common import (
    EXIT_HEAD_DIFFERS,
    EXIT_REFUSED,
    EXIT_STORE_UNAVAILABLE,
    read_only_url,
    sqlite_file,
    store_url,
)
from evidence.database_cli import evidence_app
from evidence.registry_cli import registry_app
from evidence.report_cli import psur_command, report_command

__all__ = [
    "EXIT_HEAD_DIFFERS",
    "EXIT_REFUSED",
    "EXIT_STORE_UNAVAILABLE",
    "alerts_app",
    "audit_app",
    "evidence_app",
    "read_only_url",
    "registry_app",
    "psur_command",
    "report_command",
    "sqlite_file",
    "store_url",
]
