"""The device registry in the evidence store: devices, tasks, versions with their
registration, claims, change records and sites, each write under change control with its
audit entry (:mod:`~evidence.registration` holds the rules)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence.models import (
    ChangeRecordRow,
    ClaimRow,
    Device,
    DeviceVersion,
    Registration,
    Site,
    Task,
    TestDatabaseVersion,
)
from evidence.registration import (
    REGISTRATION_STATUSES,
    RegistryChangeRefused,
    check_claim_change,
    check_status_change,
)
from evidence.store_errors import AlreadyExists, EvidenceError, NotFound
from evidence.store_unit import StoreUnit
from evidence.views import DeviceView, VersionView, WithdrawnClaim
from postmarket.contracts.events import Claim, utc_now
from postmarket.unregistered_change import DeviceRegistry
from postmarket.versions import ChangeKind, ChangeRecord, Version


class RegistryStore(StoreUnit):
    """Devices, tasks, versions and their registration, claims, change records, sites."""

    def add_device(
        self,
        device_id: str,
        *,
        name: str = "",
        manufacturer: str = "",
        tasks: Sequence[str] = (),
        actor: str,
    ) -> None:
        with self._transaction() as session:
            if device_row(session, device_id, missing_ok=True) is not None:
                raise AlreadyExists(f"device {device_id!r} is already in the registry")
            device = Device(
                device_key=device_id, name=name, manufacturer=manufacturer, created_at=utc_now()
            )
            session.add(device)
            device.tasks = [Task(name=task, description="") for task in dict.fromkeys(tasks)]
            self._audit(
                session,
                actor,
                "registry.add_device",
                f"device:{device_id}",
                {"name": name, "manufacturer": manufacturer, "tasks": list(dict.fromkeys(tasks))},
            )

    def add_task(
        self, device_id: str, task: str, *, description: str = "", why: str = "", actor: str
    ) -> None:
        """Add a task to a registered device; its claims are then added per version."""
        if not task.strip():
            raise EvidenceError("a task needs a name")
        with self._transaction() as session:
            device = device_row(session, device_id)
            if any(existing.name == task for existing in device.tasks):
                raise AlreadyExists(f"device {device_id!r} already has task {task!r}")
            device.tasks.append(Task(name=task, description=description))
            self._audit(
                session,
                actor,
                "registry.add_task",
                f"device:{device_id}/task:{task}",
                {"description": description, "why": why},
            )

    def add_version(
        self,
        device_id: str,
        version: str,
        *,
        status: str = "unregistered",
        regulator: str = "",
        reference: str = "",
        registered_on: date | None = None,
        reference_prevalence: float | None = None,
        actor: str,
    ) -> Version:
        """Add a version with its registration status (``registered``, ``pending``...) and,
        if known, the prevalence its scores are calibrated at (strictly between 0 and 1)."""
        parsed = Version.parse(version)
        _check_status(status)
        _check_reference_prevalence(reference_prevalence)
        with self._transaction() as session:
            device = device_row(session, device_id)
            if version_row(session, device, parsed, missing_ok=True) is not None:
                raise AlreadyExists(f"{device_id} {parsed} is already in the registry")
            row = new_version_row(device, parsed, status, regulator, reference, registered_on)
            row.reference_prevalence = reference_prevalence
            session.add(row)
            self._audit(
                session,
                actor,
                "registry.add_version",
                f"device:{device_id}/version:{parsed}",
                {
                    "status": status,
                    "regulator": regulator,
                    "reference": reference,
                    "registered_on": registered_on,
                    "reference_prevalence": reference_prevalence,
                },
            )
        return parsed

    def set_reference_prevalence(
        self, device_id: str, version: str, prevalence: float | None, *, actor: str
    ) -> None:
        """Set (or, with None, forget) the prevalence of the reference population at which
        a version's scores are calibrated; strictly between 0 and 1."""
        parsed = Version.parse(version)
        _check_reference_prevalence(prevalence)
        with self._transaction() as session:
            row = version_row(session, device_row(session, device_id), parsed)
            previous = row.reference_prevalence
            row.reference_prevalence = prevalence
            self._audit(
                session,
                actor,
                "registry.set_reference_prevalence",
                f"device:{device_id}/version:{parsed}",
                {"from": previous, "to": prevalence},
            )

    def set_registration_status(
        self,
        device_id: str,
        version: str,
        status: str,
        *,
        reference: str = "",
        regulator: str = "",
        registered_on: date | None = None,
        why: str = "",
        actor: str,
    ) -> str:
        """Move a version's registration under change control (pending -> registered ->
        withdrawn, see :mod:`~evidence.registration`); return the old status.

        The audit entry keeps the old status, reference, regulator and date beside the new.
        """
        parsed = Version.parse(version)
        with self._transaction() as session:
            registration = _registration(session, device_id, parsed)
            previous = _registration_record(registration)
            try:
                check_status_change(
                    registration.status,
                    status,
                    reference_on_record=registration.reference,
                    new_reference=reference,
                )
            except RegistryChangeRefused as refusal:
                raise EvidenceError(f"{device_id} {parsed}: {refusal}") from None
            registration.status = status
            registration.reference = reference or registration.reference
            registration.regulator = regulator or registration.regulator
            if registered_on is not None:
                registration.registered_on = registered_on
            self._audit(
                session,
                actor,
                "registry.set_registration_status",
                f"device:{device_id}/version:{parsed}",
                {
                    "from": previous["status"],
                    "to": status,
                    "reference": registration.reference,
                    "previous": previous,
                    "current": _registration_record(registration),
                    "why": why,
                },
            )
            return str(previous["status"])

    def add_claim(
        self,
        device_id: str,
        version: str,
        claim: Claim,
        *,
        intended_acquisitions: Sequence[str] = (),
        intended_populations: Sequence[str] = (),
        actor: str,
    ) -> None:
        """Record a claimed performance of a version for one of its device's tasks."""
        parsed = Version.parse(version)
        with self._transaction() as session:
            registration = _registration(session, device_id, parsed)
            if registration.status == "withdrawn":
                raise EvidenceError(
                    f"{device_id} {parsed} is withdrawn: its claims are the withdrawn "
                    "registration's record; register a new version for new claims"
                )
            device = registration.version.device
            task = next((t for t in device.tasks if t.name == claim.task), None)
            if task is None:
                known = ", ".join(t.name for t in device.tasks) or "none"
                raise NotFound(
                    f"device {device_id!r} has no task {claim.task!r} (tasks: {known}); "
                    "add it first"
                )
            current = _current(registration)
            if any(c.task_id == task.id and c.metric == claim.metric for c in current):
                raise AlreadyExists(
                    f"{device_id} {parsed} already claims {claim.metric} for {claim.task}"
                )
            registration.claims.append(
                ClaimRow(
                    task=task,
                    metric=claim.metric,
                    value=claim.value,
                    ci_lower=claim.ci_lower,
                    ci_upper=claim.ci_upper,
                    test_database=claim.test_database,
                    intended_acquisitions=list(intended_acquisitions),
                    intended_populations=list(intended_populations),
                )
            )
            self._audit(
                session,
                actor,
                "registry.add_claim",
                f"device:{device_id}/version:{parsed}/task:{claim.task}",
                {
                    **claim.model_dump(mode="json"),
                    "intended_acquisitions": list(intended_acquisitions),
                    "intended_populations": list(intended_populations),
                },
            )

    def amend_claim(
        self,
        device_id: str,
        version: str,
        claim: Claim,
        *,
        intended_acquisitions: Sequence[str] | None = None,
        intended_populations: Sequence[str] | None = None,
        why: str,
        actor: str,
    ) -> Claim:
        """Replace the claim of ``claim.task`` and ``claim.metric`` with ``claim`` (the
        intended acquisitions and populations too, unless None); return the old claim.

        Refused for a withdrawn version, and for a registered one without ``why``
        (:func:`~evidence.registration.check_claim_change`). The audit entry
        keeps the old claim beside the new one.
        """
        parsed = Version.parse(version)
        with self._transaction() as session:
            registration = _registration(session, device_id, parsed)
            row = _claim_row(registration, claim.task, claim.metric, device_id, parsed)
            _check_claim_change(registration, "amend", why, device_id, parsed)
            old, old_record = _claim(row), _claim_record(row)
            row.value, row.ci_lower, row.ci_upper = claim.value, claim.ci_lower, claim.ci_upper
            row.test_database = claim.test_database
            if intended_acquisitions is not None:
                row.intended_acquisitions = list(intended_acquisitions)
            if intended_populations is not None:
                row.intended_populations = list(intended_populations)
            self._audit(
                session,
                actor,
                "registry.amend_claim",
                f"device:{device_id}/version:{parsed}/task:{claim.task}",
                {"from": old_record, "to": _claim_record(row), "why": why},
            )
            return old

    def claim(self, device_id: str, version: str, task: str, metric: str) -> Claim:
        """The claim of a version for ``task`` and ``metric``, or :class:`NotFound`."""
        parsed = Version.parse(version)
        with self._sessions() as session:
            registration = _registration(session, device_id, parsed)
            return _claim(_claim_row(registration, task, metric, device_id, parsed))

    def withdraw_claim(
        self,
        device_id: str,
        version: str,
        task: str,
        metric: str,
        *,
        why: str,
        actor: str,
        at: datetime | None = None,
    ) -> Claim:
        """Withdraw a (mistyped) claim from a version's registration; return it.

        Under the same rules as :meth:`amend_claim`. The claim stays in the registry,
        marked withdrawn at ``at`` (default now), by ``actor`` and with ``why`` (no longer
        monitored, published or counted as the version's claim; reports list it), and the
        audit entry keeps it whole too.
        """
        parsed = Version.parse(version)
        with self._transaction() as session:
            registration = _registration(session, device_id, parsed)
            row = _claim_row(registration, task, metric, device_id, parsed)
            _check_claim_change(registration, "withdraw", why, device_id, parsed)
            withdrawn = _claim(row)
            self._audit(
                session,
                actor,
                "registry.withdraw_claim",
                f"device:{device_id}/version:{parsed}/task:{task}",
                {"withdrawn": _claim_record(row), "why": why},
            )
            row.withdrawn_at, row.withdrawn_by, row.withdrawn_why = at or utc_now(), actor, why
            return withdrawn

    def add_change(self, device_id: str, version: str, change: ChangeRecord, *, actor: str) -> None:
        """Record what changed to make ``version`` (one change record per version)."""
        parsed = Version.parse(version)
        with self._transaction() as session:
            row = version_row(session, device_row(session, device_id), parsed)
            if row.change is not None:
                raise AlreadyExists(f"{device_id} {parsed} already has a change record")
            row.change = ChangeRecordRow(
                kind=change.kind.value,
                description=change.description,
                training_fraction_changed=change.training_fraction_changed,
                created_at=utc_now(),
            )
            self._audit(
                session,
                actor,
                "registry.add_change",
                f"device:{device_id}/version:{parsed}",
                {
                    "kind": change.kind.value,
                    "description": change.description,
                    "training_fraction_changed": change.training_fraction_changed,
                },
            )

    def add_site(self, site_id: str, *, name: str = "", actor: str) -> None:
        with self._transaction() as session:
            if session.scalars(select(Site).where(Site.site_key == site_id)).first():
                raise AlreadyExists(f"site {site_id!r} is already in the registry")
            session.add(Site(site_key=site_id, name=name, created_at=utc_now()))
            self._audit(session, actor, "registry.add_site", f"site:{site_id}", {"name": name})

    def device(self, device_id: str) -> DeviceView:
        with self._sessions() as session:
            return _device_view(device_row(session, device_id))

    def devices(self) -> list[DeviceView]:
        with self._sessions() as session:
            rows = session.scalars(select(Device).order_by(Device.device_key))
            return [_device_view(row) for row in rows]

    def registry_snapshot(self, device_id: str) -> DeviceRegistry:
        """What :func:`~postmarket.unregistered_change.unregistered_change_alert`
        needs to judge a version of ``device_id`` seen in the field."""
        view = self.device(device_id)
        return DeviceRegistry(
            device_id=device_id,
            registered_versions=frozenset(
                v.version for v in view.versions if v.registration_status == "registered"
            ),
            change_records={v.version: v.change for v in view.versions if v.change is not None},
        )

    def has_test_database(self, name: str, version: str) -> bool:
        """Whether the store holds version ``version`` of standard test database ``name``
        (one indexed lookup; its cases are never read)."""
        query = select(TestDatabaseVersion.id).where(
            TestDatabaseVersion.name == name, TestDatabaseVersion.version == version
        )
        with self._sessions() as session:
            return session.scalars(query.limit(1)).first() is not None


# --- rows and views ----------------------------------------------------------------------------


def _check_status(status: str) -> None:
    if status not in REGISTRATION_STATUSES:
        raise EvidenceError(
            f"unknown registration status {status!r}; use one of {', '.join(REGISTRATION_STATUSES)}"
        )


def _check_reference_prevalence(prevalence: float | None) -> None:
    if prevalence is not None and not (math.isfinite(prevalence) and 0.0 < prevalence < 1.0):
        raise EvidenceError(
            f"reference prevalence {prevalence!r} must lie strictly between 0 and 1 "
            "(the share of positives in the population the scores are calibrated on)"
        )


def new_version_row(
    device: Device,
    version: Version,
    status: str,
    regulator: str = "",
    reference: str = "",
    registered_on: date | None = None,
) -> DeviceVersion:
    """A new version row of ``device`` with its registration (the caller adds it)."""
    row = DeviceVersion(
        device=device,
        version=str(version),
        major=version.major,
        minor=version.minor,
        corrective=version.corrective,
        bugfix=version.bugfix,
        created_at=utc_now(),
    )
    row.registration = Registration(
        status=status,
        regulator=regulator,
        reference=reference,
        registered_on=registered_on,
        created_at=utc_now(),
    )
    return row


def device_row(session: Session, device_id: str, *, missing_ok: bool = False) -> Device:
    row = session.scalars(select(Device).where(Device.device_key == device_id)).first()
    if row is None and not missing_ok:
        raise NotFound(f"no device {device_id!r} in the registry; add it first")
    return row  # type: ignore[return-value]


def version_row(
    session: Session, device: Device, version: Version, *, missing_ok: bool = False
) -> DeviceVersion:
    row = session.scalars(
        select(DeviceVersion).where(
            DeviceVersion.device_id == device.id, DeviceVersion.version == str(version)
        )
    ).first()
    if row is None and not missing_ok:
        raise NotFound(f"no version {version} of device {device.device_key!r}; add it first")
    return row  # type: ignore[return-value]


def _registration(session: Session, device_id: str, version: Version) -> Registration:
    row = version_row(session, device_row(session, device_id), version)
    if row.registration is None:
        raise NotFound(f"{device_id} {version} has no registration record")
    return row.registration


def _claim_row(
    registration: Registration, task: str, metric: str, device_id: str, version: Version
) -> ClaimRow:
    current = _current(registration)
    row = next((c for c in current if c.task.name == task and c.metric == metric), None)
    if row is None:
        claimed = ", ".join(f"{c.task.name} {c.metric}" for c in current) or "none"
        raise NotFound(f"{device_id} {version} claims no {metric} for {task} (claims: {claimed})")
    return row


def _current(registration: Registration) -> list[ClaimRow]:
    """The claims a registration holds now: the ones not withdrawn."""
    return [c for c in registration.claims if c.withdrawn_at is None]


def _withdrawn(registration: Registration) -> list[WithdrawnClaim]:
    """The claims withdrawn from a registration, each with when, by whom and why, in the
    order they were withdrawn."""
    withdrawn = [
        WithdrawnClaim(
            claim=_claim(c),
            withdrawn_at=c.withdrawn_at,
            withdrawn_by=c.withdrawn_by or "",
            why=c.withdrawn_why or "",
        )
        for c in registration.claims
        if c.withdrawn_at is not None
    ]
    return sorted(withdrawn, key=lambda w: w.withdrawn_at)


def _check_claim_change(
    registration: Registration, change: str, why: str, device_id: str, version: Version
) -> None:
    try:
        check_claim_change(registration.status, change, why)
    except RegistryChangeRefused as refusal:
        raise EvidenceError(f"{device_id} {version}: {refusal}") from None


def _claim_record(row: ClaimRow) -> dict[str, Any]:
    """A claim row as its audit entries keep it: the claim and its intended use."""
    return {
        **_claim(row).model_dump(mode="json"),
        "intended_acquisitions": list(row.intended_acquisitions),
        "intended_populations": list(row.intended_populations),
    }


def _registration_record(registration: Registration) -> dict[str, Any]:
    """A registration's fields as its audit entries keep them."""
    return {
        "status": registration.status,
        "regulator": registration.regulator,
        "reference": registration.reference,
        "registered_on": registration.registered_on,
    }


def _claim(row: ClaimRow) -> Claim:
    return Claim(
        task=row.task.name,
        metric=row.metric,  # type: ignore[arg-type]
        value=row.value,
        ci_lower=row.ci_lower,
        ci_upper=row.ci_upper,
        test_database=row.test_database,
    )


def _change(row: ChangeRecordRow) -> ChangeRecord:
    return ChangeRecord(
        kind=ChangeKind(row.kind),
        description=row.description,
        training_fraction_changed=row.training_fraction_changed,
    )


def _version_view(row: DeviceVersion) -> VersionView:
    registration = row.registration
    return VersionView(
        device_id=row.device.device_key,
        version=Version.parse(row.version),
        registration_status=registration.status if registration else "unregistered",
        regulator=registration.regulator if registration else "",
        reference=registration.reference if registration else "",
        registered_on=registration.registered_on if registration else None,
        change=_change(row.change) if row.change else None,
        claims=tuple(_claim(c) for c in _current(registration)) if registration else (),
        reference_prevalence=row.reference_prevalence,
        withdrawn_claims=tuple(_withdrawn(registration)) if registration else (),
    )


def _device_view(row: Device) -> DeviceView:
    versions = sorted((_version_view(v) for v in row.versions), key=lambda v: v.version)
    return DeviceView(
        device_id=row.device_key,
        name=row.name,
        manufacturer=row.manufacturer,
        tasks=tuple(task.name for task in row.tasks),
        versions=tuple(versions),
    )
