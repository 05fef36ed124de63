"""Trend plans in the evidence store: recorded once, changed only by audited amendments.

A plan lives in the hash-chained audit trail itself (``plan.record``, then any
``plan.amend``), so no one can change what was fixed in advance without it showing: the
trend report lists every amendment, and flags one made once the observation period began.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence.audit import audit_time
from evidence.models import AuditEntryRow
from evidence.store import EvidenceStore
from evidence.store_unit import queue_writers
from evidence.trend import Amendment, PlanError, TrendPlan, TrendResult, evaluate

RECORD = "plan.record"
AMEND = "plan.amend"


def plan_subject(device_id: str, name: str) -> str:
    return f"plan:{device_id}:{name}"


def record_plan(store: EvidenceStore, plan: TrendPlan, actor: str) -> None:
    """Store a new plan; a plan of that name is changed only by :func:`amend_plan`."""
    subject = plan_subject(plan.device_id, plan.name)
    with store.writing() as session:
        queue_writers(session)
        if _entries(session, subject):
            raise PlanError(
                f"plan {plan.name} of {plan.device_id} is already recorded; change it with "
                "`postmarket plan amend ... --why`, which the trend report shows"
            )
        store.audit(session, actor, RECORD, subject, {"plan": plan.as_json()})


def amend_plan(
    store: EvidenceStore, plan: TrendPlan, actor: str, why: str, at: datetime | None = None
) -> Amendment:
    """Replace a recorded plan, with the reason; the trend report lists the amendment."""
    if not why.strip():
        raise PlanError("an amendment needs its reason (--why)")
    subject = plan_subject(plan.device_id, plan.name)
    at = at or datetime.now(UTC)
    with store.writing() as session:
        queue_writers(session)
        entries = _entries(session, subject)
        if not entries:
            raise PlanError(f"no plan {plan.name} of {plan.device_id} to amend; record it first")
        before = _plan_of(entries[-1])
        if before == plan:
            raise PlanError(f"plan {plan.name} is already exactly this; nothing to amend")
        payload = {"plan": plan.as_json(), "why": why, "at": at.isoformat()}
        store.audit(session, actor, AMEND, subject, payload)
    return Amendment(at, actor, why, at.date() >= before.observation_start)


def load_plan(
    store: EvidenceStore, device_id: str, name: str
) -> tuple[TrendPlan, tuple[Amendment, ...]]:
    """The plan as last amended, and its amendments, oldest first."""
    with store.reading() as session:
        entries = _entries(session, plan_subject(device_id, name))
    if not entries:
        raise PlanError(f"no plan {name} of {device_id}; `postmarket plan list` shows them")
    return _plan_of(entries[-1]), _amendments(entries)


def list_plans(store: EvidenceStore, device_id: str | None = None) -> list[TrendPlan]:
    """Every plan as last amended, by device and name."""
    with store.reading() as session:
        rows = session.scalars(
            select(AuditEntryRow)
            .where(AuditEntryRow.action.in_((RECORD, AMEND)))
            .order_by(AuditEntryRow.sequence)
        ).all()
    latest = {row.subject: _plan_of(row) for row in rows}
    plans = [p for p in latest.values() if device_id is None or p.device_id == device_id]
    return sorted(plans, key=lambda p: (p.device_id, p.name))


def plans_stored_before(
    store: EvidenceStore, device_id: str, until: datetime
) -> list[tuple[TrendPlan, tuple[Amendment, ...]]]:
    """The device's plans recorded before ``until``, each as it stood then, by name.

    An amendment stored at or after ``until`` is left out, so a past period's PSUR keeps
    showing the plan that was in force at its end. The database selects the device's
    entries and the time: only those are read.
    """
    if until.tzinfo is None:
        raise ValueError("until must be timezone-aware: audit entries are recorded in UTC")
    with store.reading() as session:
        rows = session.scalars(
            select(AuditEntryRow)
            .where(
                AuditEntryRow.action.in_((RECORD, AMEND)),
                AuditEntryRow.subject.startswith(plan_subject(device_id, ""), autoescape=True),
                AuditEntryRow.recorded_at < audit_time(until),
            )
            .order_by(AuditEntryRow.sequence)
        ).all()
    by_subject: dict[str, list[AuditEntryRow]] = {}
    for row in rows:
        by_subject.setdefault(row.subject, []).append(row)
    plans = []
    for entries in by_subject.values():
        plan = _plan_of(entries[-1])
        # A device id may hold a colon: "plan:ct:" also prefixes device "ct:v2"'s plans.
        if plan.device_id == device_id and entries[0].action == RECORD:
            plans.append((plan, _amendments(entries)))
    return sorted(plans, key=lambda stored: stored[0].name)


def trend_of(
    store: EvidenceStore, plan: TrendPlan, amendments: tuple[Amendment, ...] = ()
) -> TrendResult:
    """The plan's trend report on the store's outcomes: what ``plan trend`` and the PSUR show."""
    from evidence.report import window

    outcomes = store.outcomes(plan.device_id, *window(plan.baseline_start, plan.observation_end))
    return evaluate(plan, outcomes, amendments)


def _amendments(entries: list[AuditEntryRow]) -> tuple[Amendment, ...]:
    return tuple(
        _amendment(entry, _plan_of(before))
        for before, entry in zip(entries, entries[1:], strict=False)
        if entry.action == AMEND
    )


def _entries(session: Session, subject: str) -> list[AuditEntryRow]:
    return list(
        session.scalars(
            select(AuditEntryRow)
            .where(AuditEntryRow.subject == subject, AuditEntryRow.action.in_((RECORD, AMEND)))
            .order_by(AuditEntryRow.sequence)
        ).all()
    )


def _plan_of(entry: AuditEntryRow) -> TrendPlan:
    return TrendPlan.from_json(json.loads(entry.payload)["plan"])


def _amendment(entry: AuditEntryRow, before: TrendPlan) -> Amendment:
    """``before``: the plan in force when the amendment was made (what was fixed then)."""
    payload = json.loads(entry.payload)
    at = datetime.fromisoformat(payload["at"])
    return Amendment(at, entry.actor, payload["why"], at.date() >= before.observation_start)
