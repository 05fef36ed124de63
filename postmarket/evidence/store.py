"""The evidence store: registry, change records, sightings, snapshots, alerts and audit trail.

Every write to the registry or to alerts appends an audit entry in the same transaction, so
the trail and the data cannot disagree. Opening a store migrates its database to the newest
schema. Reads return plain frozen views (:mod:`~postmarket.evidence.views`), never ORM
objects tied to a session.

One concept per module, composed here: the shared unit (connection, sessions, transactions
and the audit trail) in :mod:`~postmarket.evidence.store_unit`, then
:mod:`~postmarket.evidence.store_registry`, :mod:`~postmarket.evidence.store_sightings`,
:mod:`~postmarket.evidence.store_alerts`, :mod:`~postmarket.evidence.store_counts` and
:mod:`~postmarket.evidence.store_snapshots`. Standard test databases are functions over the
store's public unit (:mod:`~postmarket.evidence.testdb_store`).
"""

from __future__ import annotations

from postmarket.evidence.store_alerts import SHORT_ID_LENGTH, AlertStore, short_alert_id
from postmarket.evidence.store_counts import FieldEventStore
from postmarket.evidence.store_errors import (
    AlreadyExists,
    AmbiguousAlertId,
    EvidenceError,
    NotFound,
)
from postmarket.evidence.store_registry import RegistryStore
from postmarket.evidence.store_sightings import SightingStore
from postmarket.evidence.store_snapshots import SnapshotStore
from postmarket.evidence.store_unit import SQLITE_BUSY_TIMEOUT_MS
from postmarket.evidence.views import (
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
