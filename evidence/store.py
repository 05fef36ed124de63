"""The evidence store: registry, change records, sightings, snapshots, alerts and audit trail.

Every write to the registry or to alerts appends an audit entry in the same transaction, so
the trail and the data cannot disagree. Opening a store migrates its database to the newest
schema. Reads return plain frozen views (:mod:`~evidence.views`), never ORM
objects tied to a session.

One concept per module, composed here: the shared unit (connection, sessions, transactions
and the audit trail) in :mod:`~evidence.store_unit`, then
:mod:`~evidence.store_registry`, :mod:`~evidence.store_sightings`,
:mod:`~evidence.store_alerts`, :mod:`~evidence.store_counts` and
:mod:`~evidence.store_snapshots`. Standard test databases are functions over the
store's public unit (:mod:`~evidence.testdb_store`).
"""

from __future__ import annotations

from evidence.store_alerts import SHORT_ID_LENGTH, AlertStore, short_alert_id
from evidence.store_counts import FieldEventStore
from evidence.store_errors import (
    AlreadyExists,
    AmbiguousAlertId,
    EvidenceError,
    NotFound,
)
from evidence.store_registry import RegistryStore
from evidence.store_sightings import SightingStore
from evidence.store_snapshots import SnapshotStore
from evidence.store_unit import SQLITE_BUSY_TIMEOUT_MS
from evidence.views import (
    AlertRecurrenceCount,
    AlertStatusCount,
    AlertView,
    DeviceView,
    OutcomeRecord,
    PredictionCount,
    SiteCounts,
    VersionView,
)


class EvidenceStore(RegistryStore, SightingStore, AlertStore, FieldEventStore, SnapshotStore):
    """The evidence database at ``url`` (SQLite file or PostgreSQL), migrated to head on open."""


__all__ = [
    "SHORT_ID_LENGTH",
    "SQLITE_BUSY_TIMEOUT_MS",
    "AlertRecurrenceCount",
    "AlertStatusCount",
    "AlertView",
    "AlreadyExists",
    "AmbiguousAlertId",
    "DeviceView",
    "EvidenceError",
    "EvidenceStore",
    "NotFound",
    "OutcomeRecord",
    "PredictionCount",
    "SiteCounts",
    "VersionView",
    "short_alert_id",
]
