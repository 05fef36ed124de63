"""Review decisions in the report and the PSUR (issue 16): every restart of a claims test,
selected by decision time in the database on SQLite and PostgreSQL, shown in the HTML, held
in the CSV/JSON exports and the content hash; a store without one keeps its documents."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from evidence_builders import DEVICE, T0, make_alert, make_stream, registered_device
from report_builders import populated_store
from report_rendering import headings
from sqlalchemy import event, select

from evidence import store_alerts, store_unit
from evidence.models import AuditEntryRow
from evidence.psur import (
    build_psur,
    export_psur_csv,
    export_psur_json,
    psur_hash,
    psur_tables,
)
from evidence.psur_render import render_psur_html
from evidence.rebaseline import rebaseline_decision, review_decision
from evidence.report import DeviceReport, build_report
from evidence.report_promise import SurveillancePlan
from evidence.report_render import render_html
from evidence.report_tables import content_hash, export_csv, export_json, report_tables
from evidence.store import EvidenceStore
from evidence.views import ReviewView
from postmarket.contracts.events import Rebaseline, StreamKey
from postmarket.versions import preset

POLICY = preset("nmpa-syzb")
PLAN = SurveillancePlan("ci_lower", 10.0, 100)
WHY = "412 cases read: <site-b> camera miscalibrated, recalibrated under CAPA-2026-031"
MARCH = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
NEIGHBOUR = f"{DEVICE}-eu"
"""A device whose id extends this one's."""
EAST = timezone(timedelta(hours=8))


def reviewed(
    store: EvidenceStore,
    decided_at: datetime,
    stream: StreamKey | None = None,
    detector: str = "sensitivity_claims_test",
) -> Rebaseline:
    """A claim-based alert raised, acknowledged, then closed by a recorded review decision."""
    alert = make_alert(stream=stream or make_stream(), detector=detector)
    store.record_alert(alert, actor="worker")
    store.acknowledge_alert(alert.alert_id, by="dr.li", note="reading the cases", at=T0)
    decision = review_decision(alert, "dr.li", WHY, decided_at)
    store.record_review(decision)
    return decision


@dataclasses.dataclass(frozen=True)
class Reviews:
    store: EvidenceStore
    first: Rebaseline
    """Decided at March's first instant."""
    east: Rebaseline
    """Decided 2026-04-01 07:00 at UTC+08:00: 2026-03-31 23:00 UTC, in March."""
    april: Rebaseline
    """Decided at April's first instant."""
    february: Rebaseline
    """Decided a microsecond before March."""
    neighbour: Rebaseline


@pytest.fixture
def reviews(store: EvidenceStore) -> Reviews:
    """Four reviews of the device around March and one of another device in it; a
    re-baselining and a plain resolution written like a review, in March too."""
    registered_device(store)
    begin, stop = MARCH
    site_b = make_stream(site_id="site-b")
    first = reviewed(store, begin)
    east = reviewed(store, datetime(2026, 4, 1, 7, tzinfo=EAST), site_b, "sensitivity_cusum")
    april = reviewed(store, stop)
    february = reviewed(store, begin - timedelta(microseconds=1), site_b)
    neighbour = reviewed(store, begin + timedelta(days=3), make_stream(device_id=NEIGHBOUR))
    drift = make_alert(detector="score_drift")
    store.record_alert(drift, actor="worker")
    store.acknowledge_alert(drift.alert_id, by="dr.li", note="new camera?", at=T0)
    store.record_rebaseline(rebaseline_decision(drift, "dr.li", "camera validated", T0))
    lookalike = make_alert(detector="specificity_claims_test")
    store.record_alert(lookalike, actor="worker")
    store.acknowledge_alert(lookalike.alert_id, by="dr.li", note="reading", at=T0)
    store.resolve_alert(
        lookalike.alert_id,
        by="dr.li",
        resolution=store_alerts.REVIEW_RESOLUTION.format(decision="none") + WHY,
        at=T0,
    )
    return Reviews(store, first, east, april, february, neighbour)


def ids(views: list[ReviewView] | tuple[ReviewView, ...]) -> list[str]:
    return [view.decision_id for view in views]


def decision_id(decision: Rebaseline) -> str:
    return str(decision.rebaseline_id)


# --- the store selects them ------------------------------------------------------------------


def test_the_period_s_reviews_are_the_decisions_taken_in_it(reviews: Reviews) -> None:
    shown = reviews.store.review_decisions(DEVICE, *MARCH)
    assert ids(shown) == [decision_id(reviews.first), decision_id(reviews.east)]
    first = reviews.first
    assert shown[0] == ReviewView(
        decision_id=decision_id(first),
        stream=first.stream,
        alert_id=str(first.alert_id),
        detector="sensitivity_claims_test",
        alert_raised_at=make_alert().raised_at,
        decided_at=MARCH[0],
        decided_by="dr.li",
        reason=WHY,
    )


def test_a_decision_published_in_another_time_zone_counts_at_its_instant(
    reviews: Reviews,
) -> None:
    # Its published text ("2026-04-01T07:00:00+08:00") reads as April; the instant is March's.
    (east,) = [
        r for r in reviews.store.review_decisions(DEVICE, *MARCH) if r.detector.endswith("cusum")
    ]
    assert east.decided_at == datetime(2026, 3, 31, 23, tzinfo=UTC)
    april = reviews.store.review_decisions(DEVICE, MARCH[1], MARCH[1] + timedelta(days=30))
    assert ids(april) == [decision_id(reviews.april)]


def test_re_baselinings_and_resolutions_written_like_a_review_are_not_reviews(
    reviews: Reviews,
) -> None:
    every = reviews.store.review_decisions(
        DEVICE, T0 - timedelta(days=365), T0 + timedelta(days=365)
    )
    assert ids(every) == [
        decision_id(d) for d in (reviews.february, reviews.first, reviews.east, reviews.april)
    ]


def test_another_device_s_reviews_are_its_own(reviews: Reviews) -> None:
    assert ids(reviews.store.review_decisions(NEIGHBOUR, *MARCH)) == [
        decision_id(reviews.neighbour)
    ]
    assert reviews.store.review_decisions("lung-ct", *MARCH) == []


def test_a_review_s_audit_payload_names_its_alert_first(reviews: Reviews) -> None:
    # The store joins a review's entry to its alert by the payload's first characters.
    (entry, *_) = [e for e in reviews.store.audit_entries() if e.action == "stream.review"]
    assert entry.payload.startswith('{"alert_id":"' + str(reviews.first.alert_id) + '",')


def _read_in_python(
    store: EvidenceStore, device_id: str, begin: datetime, stop: datetime
) -> list[str]:
    """Every review entry read and filtered here, by the decision's own time and stream."""
    with store.reading() as session:
        payloads = session.scalars(
            select(AuditEntryRow.payload)
            .where(AuditEntryRow.action == "stream.review")
            .order_by(AuditEntryRow.sequence)
        ).all()
    decisions = [Rebaseline.model_validate_json(payload) for payload in payloads]
    kept = [
        d for d in decisions if d.stream.device_id == device_id and begin <= d.decided_at < stop
    ]
    return [decision_id(d) for d in sorted(kept, key=lambda d: d.decided_at)]


@pytest.mark.parametrize("device_id", [DEVICE, NEIGHBOUR, "absent"])
def test_the_selection_is_that_of_reading_every_entry(reviews: Reviews, device_id: str) -> None:
    begin, stop = MARCH
    for window in [MARCH, (begin - timedelta(days=1), stop), (begin, stop + timedelta(days=1)),
                   (begin + timedelta(microseconds=1), stop - timedelta(hours=1))]:  # fmt: skip
        assert ids(reviews.store.review_decisions(device_id, *window)) == _read_in_python(
            reviews.store, device_id, *window
        )


@pytest.fixture
def statements(reviews: Reviews) -> Iterator[list[str]]:
    """The SQL the store sends from now on."""
    sent: list[str] = []

    def note(*arguments: Any) -> None:
        sent.append(arguments[2])

    event.listen(reviews.store.engine, "before_cursor_execute", note)
    yield sent
    event.remove(reviews.store.engine, "before_cursor_execute", note)


def test_the_database_selects_the_device_and_the_period(
    reviews: Reviews, statements: list[str]
) -> None:
    reviews.store.review_decisions(DEVICE, *MARCH)
    (query,) = [sql for sql in statements if "audit_entries" in sql]
    assert "alerts.device_key =" in query
    assert "alerts.resolved_at >=" in query and "alerts.resolved_at <" in query


# --- the report and the PSUR show them -------------------------------------------------------


def _report(store: EvidenceStore, first: date, last: date) -> DeviceReport:
    return build_report(store, DEVICE, first, last, POLICY, PLAN)


def _table(tables: list[Any], name: str) -> list[dict[str, Any]]:
    (table,) = [t for t in tables if t.name == name]
    return list(table.records())


def test_the_report_tables_and_findings_hold_the_period_s_reviews(reviews: Reviews) -> None:
    report = _report(reviews.store, date(2026, 3, 1), date(2026, 3, 31))
    rows = _table(report_tables(report), "reviews")
    first = reviews.first
    assert rows[0] == {
        "decided_at": "2026-03-01T00:00:00+00:00",
        "decided_by": "dr.li",
        "version": "2.1.0.3",
        "site": "site-a",
        "task": first.stream.task,
        "alert_id": str(first.alert_id),
        "alert_detector": "sensitivity_claims_test",
        "alert_raised_at": make_alert().raised_at.isoformat(),
        "reason": WHY,
        "decision_id": decision_id(first),
    }
    assert [row["decided_at"] for row in rows[1:]] == ["2026-03-31T23:00:00+00:00"]
    assert (
        "2 review decision(s) in the period restarted any rejected claims test of 2 stream(s) "
        "(see Review decisions); each restart is a new test, paid for by the fleet false-alarm "
        "budget." in report.findings()
    )


def test_the_psur_holds_the_year_s_reviews_by_decision_time(reviews: Reviews) -> None:
    psur = build_psur(reviews.store, DEVICE, 2026, POLICY)
    expected = [reviews.february, reviews.first, reviews.east, reviews.april]
    assert [row["decision_id"] for row in _table(psur_tables(psur), "reviews")] == [
        decision_id(d) for d in expected
    ]
    assert "reviews" not in {
        t.name for t in psur_tables(build_psur(reviews.store, DEVICE, 2025, POLICY))
    }


def test_the_exports_hold_the_reviews_and_the_hash_covers_them(
    reviews: Reviews, tmp_path: Path
) -> None:
    psur = build_psur(reviews.store, DEVICE, 2026, POLICY)
    exported = json.loads(export_psur_json(psur))
    assert exported["content_hash"] == psur_hash(psur)
    assert exported["tables"]["reviews"] == _table(psur_tables(psur), "reviews")
    export_psur_csv(psur, tmp_path)
    with (tmp_path / "reviews.csv").open(newline="", encoding="utf-8") as file:
        read = list(csv.DictReader(file))
    assert [(r["decision_id"], r["reason"]) for r in read] == [
        (row["decision_id"], WHY) for row in exported["tables"]["reviews"]
    ]
    without = dataclasses.replace(psur, report=dataclasses.replace(psur.report, reviews=()))
    assert psur_hash(without) != psur_hash(psur)
    report = _report(reviews.store, date(2026, 3, 1), date(2026, 3, 31))
    assert content_hash(dataclasses.replace(report, reviews=())) != content_hash(report)


def test_the_html_shows_each_review_after_the_alerts(reviews: Reviews) -> None:
    report = _report(reviews.store, date(2026, 3, 1), date(2026, 3, 31))
    psur = build_psur(reviews.store, DEVICE, 2026, POLICY)
    for document, shown in [(render_html(report), 2), (render_psur_html(psur), 4)]:
        order = headings(document)
        assert order.index("alerts") + 1 == order.index("reviews")
        body = document[document.index('<section id="reviews">') :]
        body = body[: body.index("</section>")]
        assert "<h2>Review decisions: claims tests restarted</h2>" in body
        assert body.count("<tr><td>") == shown
        assert "alpha = s/(1+s)" in body and "fleet false-alarm budget" in body
        first = reviews.first
        assert (
            "<tr><td>2026-03-01 00:00 UTC<br><small>decision "
            f'<code title="{first.rebaseline_id}">{str(first.rebaseline_id)[:8]}</code></small>'
            "</td><td>dr.li</td><td>2.1.0.3 site-a referable_dr</td><td>"
            f'<code class="alert-id" title="{first.alert_id}">{str(first.alert_id)[:8]}</code>'
            "<br><small>sensitivity_claims_test, raised 2026-03-07</small></td><td>"
            "412 cases read: &lt;site-b&gt; camera miscalibrated, recalibrated under "
            "CAPA-2026-031</td></tr>"
        ) in body
    assert 'restarted the pipeline\'s claims tests on streams in the year (<a href="#reviews">' in (
        render_psur_html(psur)
    )


def test_a_period_without_reviews_shows_no_review_table_section_or_finding(
    reviews: Reviews,
) -> None:
    report = _report(reviews.store, date(2026, 1, 1), date(2026, 1, 31))
    assert report.reviews == ()
    assert "reviews" not in {t.name for t in report_tables(report)}
    assert not any("review decision" in line for line in report.findings())
    document = render_html(report)
    assert "reviews" not in headings(document) and "Review decisions" not in document


# --- a store without reviews keeps its documents ---------------------------------------------

GENERATED = datetime(2027, 1, 2, 3, 4, tzinfo=UTC)
CLOCK = datetime(2026, 5, 1, 12, tzinfo=UTC)
BEFORE_REVIEWS = {
    "report_hash": "65a50e88b0238404837bcca02a8df8f1c4b7e54db6fefa8381d7d8c967d115b4",
    "report_json": "b36f312fb1ae5b70968435e50928bbd4293ac3b2c5322e4b708b4eae19b73e56",
    "report_csv": "6392259652d0ae974f7e2612d9ee5849d4e396ef01c05bd65cd159928d4f1725",
    "psur_hash": "376202bcf9b3ee366df22cd61c9d2bc3d560869a8976b74ecf733575b3d61d00",
    "psur_json": "7f6711a5d68243d0d3f72ffc0c73a46775b76440ea8929b2253667c67e6b3430",
    "psur_csv": "95ef47428b2ea2f1ff421bb5e74d1307758e7a9ae508a8537b9c0f90644a2de4",
}
"""The digests of the documents below, computed by the code from before reviews were
reported (the documents' own ids and hashes, and their exports' bytes). A change elsewhere
that is meant to change these documents updates them; a review change never may."""


def without_reviews(store: EvidenceStore) -> None:
    """The report tests' season of field data, re-baselinings in and before the year, and an
    acknowledged claims test alert never reviewed."""
    populated_store(store)
    for at in (T0 + timedelta(days=10), T0 - timedelta(days=400)):
        alert = make_alert(detector="score_drift", raised_at=at)
        store.record_alert(alert, actor="worker")
        store.acknowledge_alert(alert.alert_id, by="dr.li", note="new camera?", at=at)
        store.record_rebaseline(rebaseline_decision(alert, "dr.li", "camera validated", at))
    claims = make_alert(detector="sensitivity_claims_test", raised_at=T0 + timedelta(days=12))
    store.record_alert(claims, actor="worker")
    store.acknowledge_alert(claims.alert_id, by="dr.li", note="reading", at=T0)


def _digest(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _csv_digest(written: list[Path]) -> str:
    return _digest(b"".join(path.name.encode() + path.read_bytes() for path in written))


def documents_without_reviews(store: EvidenceStore, scratch: Path) -> dict[str, str]:
    """The digests of the March report's and the 2026 PSUR's hash, JSON and CSV exports."""
    report = dataclasses.replace(
        _report(store, date(2026, 3, 1), date(2026, 3, 31)), generated_at=GENERATED
    )
    psur = build_psur(store, DEVICE, 2026, POLICY)
    psur = dataclasses.replace(
        psur, report=dataclasses.replace(psur.report, generated_at=GENERATED)
    )
    return {
        "report_hash": content_hash(report),
        "report_json": _digest(export_json(report)),
        "report_csv": _csv_digest(export_csv(report, scratch / "report")),
        "psur_hash": psur_hash(psur),
        "psur_json": _digest(export_psur_json(psur)),
        "psur_csv": _csv_digest(export_psur_csv(psur, scratch / "psur")),
    }


def test_a_store_without_reviews_gives_the_hash_and_exports_it_gave_before(
    store: EvidenceStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The audit trail's times (in the summary's head hash), an undated resolution's, and
    # the builders' alert and event ids, all fixed.
    for module in (store_unit, store_alerts):
        monkeypatch.setattr(module, "utc_now", lambda: CLOCK)
    ids = random.Random(16)  # noqa: S311 - reproducible test ids
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=ids.getrandbits(128), version=4))
    without_reviews(store)
    assert documents_without_reviews(store, tmp_path) == BEFORE_REVIEWS
