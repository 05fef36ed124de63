"""Gate runs in the evidence store: each run of a candidate version on a standard test
database, its verdict rows and one ``testdb.gate`` audit entry with the provenance.

A re-run of the same inputs is recorded again, as a new run, and its audit entry names the
earlier run with the same inputs (``same_inputs_as``): the trail shows every time the gate
was asked and what it answered, and the registry judges a version by its latest run only,
so a failing re-run (under a stricter policy, say) revokes an earlier pass rather than
being hidden by it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from evidence.models import TestDatabaseGateRun, TestDatabaseGateVerdictRow
from evidence.registration import GateOutcome, GateRequirement, gate_problem
from evidence.store import EvidenceStore, NotFound
from evidence.testdb_gate import (
    DatabasePrediction,
    GatePolicy,
    GateRow,
    GateVerdict,
    gate_verdict,
    match_predictions,
)
from evidence.testdb_store import DatabaseVersion
from postmarket.contracts.events import Claim
from postmarket.versions import Version


class GateError(ValueError):
    """A gate that cannot be run: no such version, no claim to judge."""


@dataclass(frozen=True)
class GateRun:
    """One stored gate run."""

    run_id: str
    device_id: str
    version: str
    database: str
    """``name@version``."""
    database_sha256: str
    predictions_sha256: str
    predictions_source: str
    task: str
    cases: int
    policy: dict[str, object]
    passed: bool
    run_at: datetime
    run_by: str
    rows: tuple[GateRow, ...]
    same_inputs_as: str | None = None
    """An earlier run with the same version, database, predictions and policy, if any."""


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_gate(
    store: EvidenceStore,
    device_id: str,
    version: str,
    database: DatabaseVersion,
    predictions: list[DatabasePrediction],
    *,
    predictions_sha256: str,
    predictions_source: str,
    policy: GatePolicy,
    by: str,
) -> GateRun:
    """Score ``predictions`` on ``database`` against the version's claims for the
    database's task, and store the run with one ``testdb.gate`` audit entry.

    Refused (:class:`GateError`) if the version is not in the registry or claims nothing
    for the task; :class:`~evidence.testdb_gate.PredictionFileError` if the
    predictions do not cover the database exactly.
    """
    parsed = _version(version)
    claims = _claims(store, device_id, parsed, database.task)
    scored = match_predictions(database.cases, predictions)
    verdict = gate_verdict(scored, claims, policy, database.strata, database.reference)
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with store.writing() as session:
        earlier = _same_inputs(
            session, device_id, str(parsed), database, predictions_sha256, policy
        )
        session.add(
            TestDatabaseGateRun(
                run_id=run_id,
                device_key=device_id,
                device_version=str(parsed),
                database_name=database.name,
                database_version=database.version,
                database_sha256=database.content_sha256,
                predictions_sha256=predictions_sha256,
                predictions_source=predictions_source[:256],
                task=database.task,
                cases=verdict.cases,
                policy=policy.as_dict(),
                passed=verdict.passed,
                run_at=now,
                run_by=by,
                rows=[_row(row) for row in verdict.rows],
            )
        )
        store.audit(
            session,
            by,
            "testdb.gate",
            f"device:{device_id}/version:{parsed}",
            {
                "run_id": run_id,
                "database": database.reference,
                "database_sha256": database.content_sha256,
                "predictions_sha256": predictions_sha256,
                "predictions_source": predictions_source[:256],
                "task": database.task,
                "cases": verdict.cases,
                "policy": policy.as_dict(),
                "claims": [
                    f"{c.metric} {c.value:g} [{c.ci_lower:g}, {c.ci_upper:g}]" for c in claims
                ],
                "passed": verdict.passed,
                "failed_rows": [_label(row) for row in verdict.failed_rows][:50],
                "same_inputs_as": earlier,
            },
        )
    return _run_of(
        run_id, device_id, str(parsed), database, predictions_sha256, predictions_source,
        policy, verdict, now, by, earlier,
    )  # fmt: skip


def latest_run(store: EvidenceStore, device_id: str, version: str) -> GateRun | None:
    """The version's latest gate run with its rows, or None if it was never gated."""
    parsed = _version(version)
    with store.reading() as session:
        row = session.scalars(
            select(TestDatabaseGateRun)
            .where(
                TestDatabaseGateRun.device_key == device_id,
                TestDatabaseGateRun.device_version == str(parsed),
            )
            .order_by(TestDatabaseGateRun.run_at.desc(), TestDatabaseGateRun.id.desc())
            .options(selectinload(TestDatabaseGateRun.rows))
            .limit(1)
        ).first()
        return None if row is None else _stored_run(row)


def device_runs(
    store: EvidenceStore,
    device_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[GateRun]:
    """Every gate run of the device's versions with its rows, oldest first; with ``start``
    and ``end``, only the runs in ``[start, end)``."""
    query = select(TestDatabaseGateRun).where(TestDatabaseGateRun.device_key == device_id)
    if start is not None:
        query = query.where(TestDatabaseGateRun.run_at >= start)
    if end is not None:
        query = query.where(TestDatabaseGateRun.run_at < end)
    with store.reading() as session:
        rows = session.scalars(
            query.order_by(TestDatabaseGateRun.run_at, TestDatabaseGateRun.id).options(
                selectinload(TestDatabaseGateRun.rows)
            )
        )
        return [_stored_run(row) for row in rows]


def gate_refusal(
    store: EvidenceStore,
    device_id: str,
    version: str,
    target_status: str,
    required_for: GateRequirement,
) -> str | None:
    """Why ``registry set-status`` must refuse ``target_status`` under the policy, or None:
    :func:`~evidence.registration.gate_problem` on the version's latest run."""
    if required_for == "none":
        return None
    latest = latest_run(store, device_id, version)
    outcome = None if latest is None else GateOutcome(latest.run_id, latest.passed)
    problem = gate_problem(required_for, target_status, outcome)
    return None if problem is None else f"{device_id} {_version(version)}: {problem}"


def _version(version: str) -> Version:
    try:
        return Version.parse(version)
    except ValueError as error:
        raise GateError(str(error)) from None


def _claims(store: EvidenceStore, device_id: str, version: Version, task: str) -> list[Claim]:
    try:
        device = store.device(device_id)
    except NotFound as error:
        raise GateError(str(error)) from None
    found = next((v for v in device.versions if v.version == version), None)
    if found is None:
        known = ", ".join(str(v.version) for v in device.versions) or "none"
        raise GateError(f"{device_id} has no version {version} in the registry (versions: {known})")
    claims = [claim for claim in found.claims if claim.task == task]
    if not claims:
        raise GateError(
            f"{device_id} {version} claims nothing for task {task}, the database's task: add its "
            "claims (registry add-claim) before gating it"
        )
    return claims


def _same_inputs(
    session: Session,
    device_id: str,
    version: str,
    database: DatabaseVersion,
    predictions_sha256: str,
    policy: GatePolicy,
) -> str | None:
    rows = session.scalars(
        select(TestDatabaseGateRun)
        .where(
            TestDatabaseGateRun.device_key == device_id,
            TestDatabaseGateRun.device_version == version,
            TestDatabaseGateRun.database_sha256 == database.content_sha256,
            TestDatabaseGateRun.predictions_sha256 == predictions_sha256,
        )
        .order_by(TestDatabaseGateRun.id)
    )
    return next((row.run_id for row in rows if row.policy == policy.as_dict()), None)


def _label(row: GateRow) -> str:
    return f"{row.metric} {row.stratum}={row.value}"


def _row(row: GateRow) -> TestDatabaseGateVerdictRow:
    return TestDatabaseGateVerdictRow(
        metric=row.metric,
        stratum=row.stratum[:64],
        value=row.value[:128],
        n=row.n,
        successes=row.successes,
        estimate=row.estimate,
        lower=row.lower,
        upper=row.upper,
        interval=row.interval[:32],
        acceptable=row.acceptable,
        criterion=row.criterion[:64],
        met=row.met,
        funnel=row.funnel,
        note=row.note,
    )


def _gate_row(row: TestDatabaseGateVerdictRow) -> GateRow:
    return GateRow(
        metric=row.metric,
        stratum=row.stratum,
        value=row.value,
        n=row.n,
        successes=row.successes,
        estimate=row.estimate,
        lower=row.lower,
        upper=row.upper,
        interval=row.interval,
        acceptable=row.acceptable,
        criterion=row.criterion,
        met=row.met,
        funnel=row.funnel,
        note=row.note,
    )


def _run_of(
    run_id: str,
    device_id: str,
    version: str,
    database: DatabaseVersion,
    predictions_sha256: str,
    predictions_source: str,
    policy: GatePolicy,
    verdict: GateVerdict,
    when: datetime,
    by: str,
    earlier: str | None,
) -> GateRun:
    return GateRun(
        run_id, device_id, version, database.reference, database.content_sha256,
        predictions_sha256, predictions_source, database.task, verdict.cases,
        policy.as_dict(), verdict.passed, when, by, verdict.rows, earlier,
    )  # fmt: skip


def _stored_run(row: TestDatabaseGateRun) -> GateRun:
    return GateRun(
        row.run_id, row.device_key, row.device_version,
        f"{row.database_name}@{row.database_version}", row.database_sha256,
        row.predictions_sha256, row.predictions_source, row.task, row.cases, dict(row.policy),
        row.passed, row.run_at, row.run_by, tuple(_gate_row(r) for r in row.rows),
    )  # fmt: skip
