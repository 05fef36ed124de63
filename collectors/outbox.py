"""The durable local outbox: every event is on disk before anything is sent.

One SQLite file in WAL mode with ``synchronous=FULL``: once :meth:`Outbox.put` returns,
the event survives a crash of the collector or of the machine. An event leaves the outbox
only in the transaction that records its acknowledgement in the audit table, so a crash
at any point either resends it (a duplicate the workers drop by ``event_id``) or has
already audited it: never neither.

The disk it may use is bounded: above ``warn_fraction`` of ``max_bytes`` of pending
payload a warning is logged and the near-limit metric is 1; at the limit ``put`` raises
:class:`OutboxFull` so the source stops taking input (files stay where they are) instead
of the disk filling up. The audit table holds pseudonyms, topics and offsets only.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from collectors.metrics import CollectorMetrics
from collectors.producer import Delivery, EncodedEvent, topic_and_key
from postmarket.contracts import Contract, encode

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1024**3
DEFAULT_WARN_FRACTION = 0.8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    event_id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    case_pseudonym TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    sent_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS last_failure (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    failed_at REAL NOT NULL,
    reason TEXT NOT NULL
);
"""
MAX_REASON_CHARS = 500


class OutboxFull(RuntimeError):
    """The outbox reached its disk limit; input must wait until Kafka is reachable again."""


@dataclass(frozen=True)
class PendingEvent:
    """One event waiting in the outbox."""

    event_id: str
    record: EncodedEvent
    created_at: float
    attempts: int


@dataclass(frozen=True)
class AuditEntry:
    """What was sent: pseudonyms and broker coordinates, never payload."""

    event_id: str
    topic: str
    partition: int
    offset: int
    case_pseudonym: str
    queued_at: str
    sent_at: str


class Outbox:
    """A SQLite (WAL) outbox with a bounded size and an audit trail.

    One instance is shared by the sources and the delivery thread: every operation holds
    the instance's lock, so a put never lands inside the acknowledging transaction.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = DEFAULT_MAX_BYTES,
        warn_fraction: float = DEFAULT_WARN_FRACTION,
        metrics: CollectorMetrics | None = None,
    ) -> None:
        if max_bytes <= 0 or not 0 < warn_fraction <= 1:
            raise ValueError("max_bytes must be positive and warn_fraction in (0, 1]")
        self.path = path
        self.max_bytes = max_bytes
        self.warn_fraction = warn_fraction
        self._metrics = metrics
        self._lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)
        self._near_limit = False
        self._pending_bytes = self._measure_bytes()
        if metrics is not None:
            metrics.outbox_limit_bytes.set(max_bytes)
        self._publish()

    # --- writing ------------------------------------------------------------------------------

    def put(self, event: Contract) -> bool:
        """Store an event durably; False if an event with its ``event_id`` is already here."""
        topic, key = topic_and_key(event)
        event_id = str(getattr(event, "event_id", uuid.uuid4()))
        return self.put_encoded(event_id, EncodedEvent(topic, key, encode(event)))

    def put_encoded(self, event_id: str, record: EncodedEvent) -> bool:
        with self._lock:
            size = len(record.key) + len(record.value)
            if self._pending_bytes + size > self.max_bytes:
                raise OutboxFull(
                    f"outbox {self.path} holds {self._pending_bytes} of {self.max_bytes} bytes; "
                    "Kafka has not acknowledged events for a while: check the connection"
                )
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO pending (event_id, topic, key, value, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (event_id, record.topic, record.key, record.value, time.time()),
            )
            stored = cursor.rowcount == 1
            if stored:
                self._pending_bytes += size
                self._publish()
            return stored

    # --- reading and acknowledging ------------------------------------------------------------

    def pending(self, limit: int = 500) -> list[PendingEvent]:
        """The oldest events waiting to be sent."""
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, topic, key, value, created_at, attempts FROM pending"
                " ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
            return [
                PendingEvent(
                    row[0], EncodedEvent(row[1], bytes(row[2]), bytes(row[3])), row[4], row[5]
                )
                for row in rows
            ]

    def record_attempt(self, event_ids: Sequence[str], reason: str = "") -> None:
        """Count a failed delivery attempt of these events (they stay pending), and keep
        its ``reason`` (no payload) for ``postmarket collector status``."""
        with self._lock:
            self._db.executemany(
                "UPDATE pending SET attempts = attempts + 1 WHERE event_id = ?",
                [(event_id,) for event_id in event_ids],
            )
            self._db.execute(
                "INSERT OR REPLACE INTO last_failure (id, failed_at, reason) VALUES (1, ?, ?)",
                (time.time(), reason[:MAX_REASON_CHARS]),
            )

    def acknowledge(self, sent: Iterable[tuple[PendingEvent, Delivery]]) -> int:
        """Audit and remove events the broker acknowledged, in one transaction."""
        with self._lock:
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            audit = []
            for event, delivery in sent:
                queued = datetime.fromtimestamp(event.created_at, UTC).isoformat(timespec="seconds")
                audit.append(
                    (
                        event.event_id,
                        delivery.topic,
                        delivery.partition,
                        delivery.offset,
                        event.record.key.decode(),
                        queued,
                        now,
                    )
                )
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO audit VALUES (?, ?, ?, ?, ?, ?, ?)", audit
                )
                self._db.executemany(
                    "DELETE FROM pending WHERE event_id = ?", [(row[0],) for row in audit]
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._pending_bytes = self._measure_bytes()
            self._publish()
            return len(audit)

    def depth(self) -> int:
        """How many events wait to be sent."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()
            return int(count)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def audit_entries(self, limit: int | None = None) -> list[AuditEntry]:
        """The audit trail, oldest first."""
        with self._lock:
            query = "SELECT * FROM audit ORDER BY sent_at, event_id"
            rows = self._db.execute(
                query + (" LIMIT ?" if limit else ""), (limit,) if limit else ()
            )
            return [AuditEntry(*row) for row in rows.fetchall()]

    # --- bookkeeping --------------------------------------------------------------------------

    def _measure_bytes(self) -> int:
        (total,) = self._db.execute(
            "SELECT COALESCE(SUM(length(key) + length(value)), 0) FROM pending"
        ).fetchone()
        return int(total)

    def _publish(self) -> None:
        near = self._pending_bytes >= self.warn_fraction * self.max_bytes
        if near and not self._near_limit:
            log.warning(
                "outbox %s is at %d%% of its %d-byte limit; events are not being acknowledged",
                self.path,
                100 * self._pending_bytes // self.max_bytes,
                self.max_bytes,
            )
        self._near_limit = near
        if self._metrics is not None:
            self._metrics.outbox_depth.set(self.depth())
            self._metrics.outbox_bytes.set(self._pending_bytes)
            self._metrics.outbox_near_limit.set(1 if near else 0)

    @property
    def near_limit(self) -> bool:
        return self._near_limit

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
