"""Which surveillance plans a PSUR shows (issue 18): the device's plans stored before the
period's end, each as it stood then, selected by the database on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, select
from test_trend import DEVICE, _plan

from evidence import store_unit
from evidence.models import AuditEntryRow
from evidence.store import EvidenceStore
from evidence.trend import Amendment, TrendPlan
from evidence.trend_store import (
    AMEND,
    RECORD,
    amend_plan,
    plans_stored_before,
    record_plan,
)

YEAR_END = datetime(2027, 1, 1, tzinfo=UTC)
AMENDED = datetime(2026, 6, 1, 9, tzinfo=UTC)
AMENDED_LATE = datetime(2027, 1, 5, 9, tzinfo=UTC)
NEIGHBOUR = f"{DEVICE}:eu"
"""A device whose plans' subjects start with ``plan:<DEVICE>:`` too."""


def _at(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    """The store's clock: each entry's ``recorded_at``."""
    monkeypatch.setattr(store_unit, "utc_now", lambda: when)


@pytest.fixture
def plans(store: EvidenceStore, monkeypatch: pytest.MonkeyPatch) -> EvidenceStore:
    """Two plans of the device, one amended before the year's end and again after it;
    a plan recorded after it; plans of two other devices, one of them sharing the prefix."""
    _at(monkeypatch, datetime(2026, 1, 1, 8, tzinfo=UTC))
    record_plan(store, _plan(name="sens"), "qa-lead")
    record_plan(store, _plan(name="spec", metric="specificity"), "qa-lead")
    record_plan(store, _plan(name="sens", device_id="lung-ct"), "qa-lead")
    record_plan(store, _plan(name="ghost", device_id=NEIGHBOUR), "qa-lead")
    _at(monkeypatch, AMENDED)
    amend_plan(store, _plan(name="sens", alpha=0.02), "cro", "agreed", AMENDED)
    _at(monkeypatch, AMENDED_LATE)
    amend_plan(store, _plan(name="sens", alpha=0.2), "cro", "too late", AMENDED_LATE)
    amend_plan(store, _plan(name="sens", device_id="lung-ct", alpha=0.01), "cro", "x")
    record_plan(store, _plan(name="next-year"), "qa-lead")
    return store


def _by_name(stored: list[tuple[TrendPlan, tuple[Amendment, ...]]]) -> dict[str, Any]:
    return {plan.name: (plan, amendments) for plan, amendments in stored}


def test_each_plan_is_shown_as_it_stood_at_the_cut_off(plans: EvidenceStore) -> None:
    stored = _by_name(plans_stored_before(plans, DEVICE, YEAR_END))
    assert list(stored) == ["sens", "spec"]
    plan, amendments = stored["sens"]
    assert plan == _plan(name="sens", alpha=0.02)  # the 2027 amendment is not in force
    assert [(a.at, a.by, a.why) for a in amendments] == [(AMENDED, "cro", "agreed")]
    assert stored["spec"] == (_plan(name="spec", metric="specificity"), ())


def test_a_later_cut_off_shows_the_later_amendment_and_plan(plans: EvidenceStore) -> None:
    stored = _by_name(plans_stored_before(plans, DEVICE, AMENDED_LATE + timedelta(seconds=1)))
    assert list(stored) == ["next-year", "sens", "spec"]
    assert stored["sens"][0].alpha == 0.2 and len(stored["sens"][1]) == 2


def test_other_devices_plans_are_left_out_even_when_their_id_extends_this_one(
    plans: EvidenceStore,
) -> None:
    stored = plans_stored_before(plans, DEVICE, AMENDED_LATE + timedelta(days=1))
    assert {plan.device_id for plan, _ in stored} == {DEVICE}
    (neighbour,) = plans_stored_before(plans, NEIGHBOUR, YEAR_END)
    assert neighbour[0].name == "ghost"
    (lung,) = plans_stored_before(plans, "lung-ct", YEAR_END)
    assert lung[0].alpha == 0.05


def test_an_entry_stored_at_the_cut_off_itself_is_after_it(plans: EvidenceStore) -> None:
    at_the_amendment = _by_name(plans_stored_before(plans, DEVICE, AMENDED))
    assert at_the_amendment["sens"][0].alpha == 0.05
    just_after = _by_name(plans_stored_before(plans, DEVICE, AMENDED + timedelta(microseconds=1)))
    assert just_after["sens"][0].alpha == 0.02


def test_a_cut_off_in_another_time_zone_is_the_same_instant(plans: EvidenceStore) -> None:
    # 10:30 at UTC+02:00 is 08:30 UTC, before the 09:00 UTC amendment; compared as text
    # without conversion ("...T10:30+02:00" > "...T09:00+00:00") it would seem after it.
    east = datetime(2026, 6, 1, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    assert _by_name(plans_stored_before(plans, DEVICE, east))["sens"][0].alpha == 0.05
    west = datetime(2026, 6, 1, 4, 30, tzinfo=timezone(timedelta(hours=-5)))  # 09:30 UTC
    assert _by_name(plans_stored_before(plans, DEVICE, west))["sens"][0].alpha == 0.02


def test_a_cut_off_without_a_time_zone_is_refused(plans: EvidenceStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plans_stored_before(plans, DEVICE, datetime(2027, 1, 1))  # noqa: DTZ001


def _read_in_python(
    store: EvidenceStore, device_id: str, until: datetime
) -> list[tuple[TrendPlan, tuple[Amendment, ...]]]:
    """What the PSUR showed before the database selected: every plan entry of every device,
    filtered here (the behaviour the query keeps)."""
    from evidence.trend_store import _amendments

    with store.reading() as session:
        rows = session.scalars(
            select(AuditEntryRow)
            .where(AuditEntryRow.action.in_((RECORD, AMEND)))
            .order_by(AuditEntryRow.sequence)
        ).all()
    by_subject: dict[str, list[AuditEntryRow]] = {}
    for row in rows:
        if datetime.fromisoformat(row.recorded_at) < until:
            by_subject.setdefault(row.subject, []).append(row)
    kept = []
    for entries in by_subject.values():
        plan = TrendPlan.from_json(json.loads(entries[-1].payload)["plan"])
        if plan.device_id == device_id and entries[0].action == RECORD:
            kept.append((plan, _amendments(entries)))
    return sorted(kept, key=lambda stored: stored[0].name)


@pytest.mark.parametrize("device_id", [DEVICE, NEIGHBOUR, "lung-ct", "absent"])
def test_the_results_are_those_of_reading_every_entry(plans: EvidenceStore, device_id: str) -> None:
    for until in (AMENDED, YEAR_END, AMENDED_LATE, AMENDED_LATE + timedelta(hours=1)):
        assert plans_stored_before(plans, device_id, until) == _read_in_python(
            plans, device_id, until
        )


@pytest.fixture
def statements(plans: EvidenceStore) -> Iterator[list[str]]:
    """The SQL the store sends from now on."""
    sent: list[str] = []

    def note(*arguments: Any) -> None:
        sent.append(arguments[2])

    event.listen(plans.engine, "before_cursor_execute", note)
    yield sent
    event.remove(plans.engine, "before_cursor_execute", note)


def test_the_database_selects_the_device_and_the_time(
    plans: EvidenceStore, statements: list[str]
) -> None:
    plans_stored_before(plans, DEVICE, YEAR_END)
    (query,) = [sql for sql in statements if "audit_entries" in sql]
    assert "LIKE" in query.upper() and "recorded_at <" in query
