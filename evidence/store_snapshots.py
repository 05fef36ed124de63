"""Weekly performance snapshots in the evidence store: written when a figure moved (the
pure computation is :mod:`~evidence.snapshots`), read back oldest first."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import select

from evidence.models import Device, DeviceVersion, PerformanceSnapshot, Site, Task
from evidence.snapshots import (
    Figures,
    SeriesKey,
    Snapshot,
    moved_snapshots,
    snapshot_figures,
)
from evidence.store_sightings import field_stream, field_version
from evidence.store_unit import StoreUnit, aware
from postmarket.contracts.events import StreamKey, utc_now


class SnapshotStore(StoreUnit):
    """Performance snapshots, written by the evidence sink on a timer."""

    def record_snapshots(self, device_id: str, snapshots: Sequence[Snapshot]) -> int:
        """Store the snapshots whose figures moved since the latest of their series.

        Returns how many were new. Versions, sites and tasks seen only in the field are
        added (unregistered), as for a first sighting.
        """
        weeks = {snapshot.window_start for snapshot in snapshots}
        # Only the series of these weeks can match: read only theirs when they are few.
        latest = self._latest_figures(device_id, weeks if len(weeks) <= 64 else None)
        fresh = moved_snapshots(snapshots, latest)
        if not fresh:
            return 0
        now = utc_now()
        with self._transaction() as session:
            # Ids of the versions, tasks and sites written so far: one lookup each, not one
            # per snapshot (a first refresh writes a row per week of history).
            stream_ids: dict[tuple[str, str], tuple[int, int]] = {}
            site_ids: dict[tuple[str, str, str], int] = {}
            for snapshot in fresh:
                if (snapshot.version, snapshot.task) not in stream_ids:
                    version = field_version(session, device_id, snapshot.version, snapshot.task)
                    task = next(t for t in version.device.tasks if t.name == snapshot.task)
                    stream_ids[snapshot.version, snapshot.task] = version.id, task.id
                version_id, task_id = stream_ids[snapshot.version, snapshot.task]
                site_id = None
                if snapshot.site is not None:
                    key = (snapshot.version, snapshot.task, snapshot.site)
                    if key not in site_ids:
                        _, site = field_stream(
                            session,
                            StreamKey(
                                device_id=device_id,
                                device_version=snapshot.version,
                                site_id=snapshot.site,
                                task=snapshot.task,
                            ),
                        )
                        site_ids[key] = site.id
                    site_id = site_ids[key]
                session.add(
                    PerformanceSnapshot(
                        version_id=version_id,
                        task_id=task_id,
                        site_id=site_id,
                        stratum="",
                        metric=snapshot.metric,
                        successes=snapshot.successes,
                        trials=snapshot.trials,
                        ci_lower=snapshot.ci_lower,
                        ci_upper=snapshot.ci_upper,
                        window_start=snapshot.window_start,
                        window_end=snapshot.window_end,
                        study_design=snapshot.study_design,
                        followup_completeness=snapshot.followup_completeness,
                        recorded_at=now,
                    )
                )
        return len(fresh)

    def _latest_figures(
        self, device_id: str, weeks: Collection[datetime] | None = None
    ) -> dict[SeriesKey, Figures]:
        """The figures of the newest stored snapshot of each of a device's series (of the
        series starting in ``weeks`` if given), read as plain rows, not ORM objects."""
        query = (
            select(
                DeviceVersion.version,
                Task.name,
                Site.site_key,
                PerformanceSnapshot.metric,
                PerformanceSnapshot.study_design,
                PerformanceSnapshot.window_start,
                PerformanceSnapshot.successes,
                PerformanceSnapshot.trials,
                PerformanceSnapshot.followup_completeness,
            )
            .join(DeviceVersion, PerformanceSnapshot.version_id == DeviceVersion.id)
            .join(Device, DeviceVersion.device_id == Device.id)
            .join(Task, PerformanceSnapshot.task_id == Task.id)
            .outerjoin(Site, PerformanceSnapshot.site_id == Site.id)
            .where(Device.device_key == device_id)
            .order_by(PerformanceSnapshot.recorded_at, PerformanceSnapshot.id)
        )
        if weeks is not None:
            query = query.where(PerformanceSnapshot.window_start.in_(list(weeks)))
        with self._sessions() as session:
            # Oldest first, so each series keeps its newest figures.
            return {
                (version, task, site, metric, design, aware(window_start)): snapshot_figures(
                    successes, trials, completeness
                )
                for (
                    version,
                    task,
                    site,
                    metric,
                    design,
                    window_start,
                    successes,
                    trials,
                    completeness,
                ) in session.execute(query)
            }

    def snapshots(self, device_id: str) -> list[Snapshot]:
        """A device's performance snapshots, oldest recorded first."""
        query = (
            select(PerformanceSnapshot, DeviceVersion.version, Task.name, Site.site_key)
            .join(DeviceVersion, PerformanceSnapshot.version_id == DeviceVersion.id)
            .join(Device, DeviceVersion.device_id == Device.id)
            .join(Task, PerformanceSnapshot.task_id == Task.id)
            .outerjoin(Site, PerformanceSnapshot.site_id == Site.id)
            .where(Device.device_key == device_id)
            .order_by(PerformanceSnapshot.recorded_at, PerformanceSnapshot.id)
        )
        with self._sessions() as session:
            return [
                Snapshot(
                    version=version,
                    task=task,
                    site=site,
                    metric=row.metric,
                    study_design=row.study_design,
                    window_start=aware(row.window_start),
                    window_end=aware(row.window_end),
                    successes=row.successes,
                    trials=row.trials,
                    ci_lower=row.ci_lower,
                    ci_upper=row.ci_upper,
                    followup_completeness=row.followup_completeness,
                )
                for row, version, task, site in session.execute(query)
            ]
