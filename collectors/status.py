"""``postmarket collector status``: what waits, what was sent, what failed, from the files.

Read from the outbox and the case index on disk, read-only, so it works whether the
collector is running or not and changes nothing (SQLite readers do not block its writer).
Only counts, times and the last delivery failure's reason: never an event or an identifier.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from collectors.case_index import WAITING_TABLES


class StatusError(ValueError):
    """The outbox cannot be read (missing: the collector has not run with these settings)."""


@dataclass(frozen=True)
class CollectorStatus:
    """One collector's backlog and delivery history, as its files hold them."""

    outbox_depth: int
    outbox_bytes: int
    oldest_pending_at: float | None
    most_attempts: int
    events_sent: int
    last_delivery_at: datetime | None
    last_failure_at: float | None = None
    last_failure_reason: str = ""
    cases_waiting: dict[str, int] = field(default_factory=dict)


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    if not path.is_file():
        raise StatusError(f"no file at {path}: the collector has not run with these settings")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise StatusError(f"cannot read {path}: {error}") from None
    with closing(connection):
        yield connection


def read_status(outbox_path: Path, case_index_path: Path) -> CollectorStatus:
    """The status held in the outbox and case index files (raises :class:`StatusError`)."""
    try:
        with _read_only(outbox_path) as outbox:
            depth, size, oldest, attempts = outbox.execute(
                "SELECT COUNT(*), COALESCE(SUM(length(key) + length(value)), 0),"
                " MIN(created_at), COALESCE(MAX(attempts), 0) FROM pending"
            ).fetchone()
            sent, last_sent = outbox.execute("SELECT COUNT(*), MAX(sent_at) FROM audit").fetchone()
            failure = _last_failure(outbox)
        waiting = _cases_waiting(case_index_path) if case_index_path.is_file() else {}
    except sqlite3.Error as error:
        raise StatusError(f"cannot read {outbox_path}: {error}") from None
    return CollectorStatus(
        outbox_depth=int(depth),
        outbox_bytes=int(size),
        oldest_pending_at=oldest,
        most_attempts=int(attempts),
        events_sent=int(sent),
        last_delivery_at=datetime.fromisoformat(last_sent) if last_sent else None,
        last_failure_at=failure[0] if failure else None,
        last_failure_reason=failure[1] if failure else "",
        cases_waiting=waiting,
    )


def _last_failure(outbox: sqlite3.Connection) -> tuple[float, str] | None:
    try:
        row = outbox.execute("SELECT failed_at, reason FROM last_failure").fetchone()
    except sqlite3.OperationalError:  # an outbox written before failures were kept
        return None
    return (float(row[0]), str(row[1])) if row else None


def _cases_waiting(path: Path) -> dict[str, int]:
    with _read_only(path) as cases:
        return {
            kind: int(cases.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608
            for kind, table in WAITING_TABLES.items()
        }


def status_lines(status: CollectorStatus, now: datetime, limit_bytes: int) -> list[str]:
    """The status in a few lines a person reads (times as ages: what matters is how long)."""
    percent = 100 * status.outbox_bytes / limit_bytes
    outbox = f"outbox: {status.outbox_depth} events waiting ({percent:.0f} % of its limit)"
    if status.oldest_pending_at is not None:
        oldest = datetime.fromtimestamp(status.oldest_pending_at, UTC)
        outbox += f", oldest queued {_age(oldest, now)} ago, up to {status.most_attempts} failed"
        outbox += " attempts"
    lines = [outbox]
    waiting = ", ".join(
        f"{count} {kind}" for kind, count in sorted(status.cases_waiting.items()) if count
    )
    lines.append(f"waiting for their study: {waiting or 'nothing'}")
    delivered = "never"
    if status.last_delivery_at is not None:
        delivered = f"{_age(status.last_delivery_at, now)} ago"
    lines.append(f"last delivery: {delivered} ({status.events_sent} events sent in all)")
    if status.last_failure_at is not None:
        failed = datetime.fromtimestamp(status.last_failure_at, UTC)
        lines.append(f"last error: {_age(failed, now)} ago: {status.last_failure_reason}")
    else:
        lines.append("last error: none")
    return lines


def _age(then: datetime, now: datetime) -> str:
    seconds = max(0.0, (now - then).total_seconds())
    for unit, length in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= length:
            return f"{seconds / length:.1f} {unit}"
    return f"{seconds:.0f} s"
