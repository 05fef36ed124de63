"""Versions seen in the field: the first sighting of each stream, and the versions, sites and
tasks the field shows before the registry knows them (added unregistered)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evidence.models import Device, DeviceVersion, Site, Task, VersionSighting
from evidence.store_registry import device_row, new_version_row, version_row
from evidence.store_unit import StoreUnit, aware
from postmarket.contracts.events import StreamKey, utc_now
from postmarket.versions import Version


class SightingStore(StoreUnit):
    """First sightings of each version at each site and task."""

    def record_sighting(self, stream: StreamKey, seen_at: datetime, *, actor: str) -> bool:
        """Note a version's prediction at a site; True if it is the first for that stream.

        A version or site the registry does not know yet is added (unregistered) first, so
        the field's reality is on record even when the manufacturer's paperwork is not.
        """
        try:
            with self._transaction() as session:
                version, site = field_stream(session, stream)
                session.flush()
                seen = session.scalars(
                    select(VersionSighting).where(
                        VersionSighting.version_id == version.id,
                        VersionSighting.site_id == site.id,
                        VersionSighting.task == stream.task,
                    )
                ).first()
                if seen is not None:
                    return False
                session.add(
                    VersionSighting(
                        version_id=version.id,
                        site_id=site.id,
                        task=stream.task,
                        first_seen_at=seen_at,
                    )
                )
                self._audit(
                    session,
                    actor,
                    "registry.first_sighting",
                    f"stream:{stream.as_key()}",
                    {"first_seen_at": seen_at},
                )
                return True
        except IntegrityError:
            # Another worker recorded the same first sighting a moment earlier.
            return False

    def first_sightings(self, device_id: str) -> dict[str, datetime]:
        """Each version's first sighting anywhere in the field (version -> time)."""
        query = (
            select(DeviceVersion.version, func.min(VersionSighting.first_seen_at))
            .join(VersionSighting, VersionSighting.version_id == DeviceVersion.id)
            .join(Device, Device.id == DeviceVersion.device_id)
            .where(Device.device_key == device_id)
            .group_by(DeviceVersion.version)
        )
        with self._sessions() as session:
            return {version: aware(seen) for version, seen in session.execute(query) if seen}


def field_stream(session: Session, stream: StreamKey) -> tuple[DeviceVersion, Site]:
    """The version and site of a stream seen in the field, added (unregistered) if new."""
    version = field_version(session, stream.device_id, stream.device_version, stream.task)
    site = session.scalars(select(Site).where(Site.site_key == stream.site_id)).first()
    if site is None:
        site = Site(site_key=stream.site_id, name="", created_at=utc_now())
        session.add(site)
        session.flush()
    return version, site


def field_version(session: Session, device_id: str, text: str, task: str) -> DeviceVersion:
    """A version (and its task) seen in the field, added unregistered if the registry lacks it."""
    parsed = Version.parse(text)
    device = device_row(session, device_id, missing_ok=True)
    if device is None:
        device = Device(device_key=device_id, name="", manufacturer="")
        device.created_at = utc_now()
        session.add(device)
    version = version_row(session, device, parsed, missing_ok=True)
    if version is None:
        version = new_version_row(device, parsed, "unregistered")
        session.add(version)
    if not any(existing.name == task for existing in device.tasks):
        device.tasks.append(Task(name=task, description=""))
    session.flush()
    return version
