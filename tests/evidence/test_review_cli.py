"""``postmarket alerts resolve`` of a claim-based alert publishes a review decision first, and
records the resolution only once the broker acknowledged it; other alerts publish nothing."""

from __future__ import annotations

from typing import Any

import pytest
from evidence_builders import make_alert
from kafka.errors import KafkaTimeoutError
from typer.testing import CliRunner

from evidence import rebaseline
from evidence.lifecycle import AlertStatus
from evidence.rebaseline import rebaseline_id, review_id
from evidence.store import EvidenceError, EvidenceStore
from launcher.cli import app
from postmarket.contracts import Alert, Rebaseline

runner = CliRunner()
UNREACHABLE = "127.0.0.1:1"
WHY = "site-a's camera recalibrated; sensitivity back at 0.86 over 300 cases"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Rebaseline]:
    """Every decision the command would publish (acknowledged by a pretend broker)."""
    captured: list[Rebaseline] = []

    def fake_publish(decision: Rebaseline, bootstrap: str, security: Any) -> None:
        captured.append(decision)

    monkeypatch.setattr(rebaseline, "publish_rebaseline", fake_publish)
    return captured


def stored(url: str, detector: str, *, acknowledged: bool = True, **overrides: Any) -> Alert:
    alert = make_alert(detector=detector, **overrides)
    with EvidenceStore(url) as store:
        store.record_alert(alert, actor="worker")
        if acknowledged:
            store.acknowledge_alert(alert.alert_id, by="dr.li", note="looking into it")
    return alert


def resolve(url: str, alert: Alert, why: str = WHY) -> Any:
    args = ["alerts", "resolve", str(alert.alert_id), "--resolution", why, "--by", "dr.li"]
    return runner.invoke(app, [*args, "--url", url, "--bootstrap", UNREACHABLE])


def audit_actions(url: str) -> list[str]:
    with EvidenceStore(url) as store:
        return [entry.action for entry in store.audit_entries()]


def status(url: str, alert: Alert) -> AlertStatus:
    with EvidenceStore(url) as store:
        return store.alert(alert.alert_id).status


def test_a_claims_test_alert_publishes_one_review_decision_then_is_resolved(
    sqlite_url: str, sent: list[Rebaseline]
) -> None:
    alert = stored(sqlite_url, "sensitivity_claims_test")

    result = resolve(sqlite_url, alert)

    assert result.exit_code == 0, result.output
    (decision,) = sent
    assert decision.scope == "review"
    assert decision.rebaseline_id == review_id(alert.alert_id) != rebaseline_id(alert.alert_id)
    assert (decision.stream, decision.alert_id) == (alert.stream, alert.alert_id)
    assert (decision.decided_by, decision.reason) == ("dr.li", WHY)
    assert f"alert {alert.alert_id} is resolved after review" in result.output
    assert "restart each claims test that rejected" in result.output
    assert "references and the claims are untouched" in result.output


def test_the_store_keeps_who_restarted_the_claims_tests_and_when(
    sqlite_url: str, sent: list[Rebaseline]
) -> None:
    alert = stored(sqlite_url, "specificity_cusum")

    resolve(sqlite_url, alert)

    with EvidenceStore(sqlite_url) as store:
        view = store.alert(alert.alert_id)
        review = store.audit_entries()[-1]
        assert store.verify_audit_chain().problem is None
        assert store.rebaseline_decisions(alert.stream.device_id) == []  # not a re-baselining
    assert view.status is AlertStatus.RESOLVED
    assert (view.resolved_by, view.resolved_at) == ("dr.li", sent[0].decided_at)
    assert view.resolution is not None
    assert "rejected claims tests restart" in view.resolution and WHY in view.resolution
    assert (review.action, review.subject) == ("stream.review", f"stream:{alert.stream.as_key()}")
    assert audit_actions(sqlite_url)[-2:] == ["alert.resolve", "stream.review"]


@pytest.mark.parametrize("detector", ["score_drift", "unregistered_change"])
def test_an_alert_that_tests_no_claim_publishes_nothing(
    sqlite_url: str, sent: list[Rebaseline], detector: str
) -> None:
    alert = stored(sqlite_url, detector)

    result = resolve(sqlite_url, alert)

    assert (result.exit_code, result.output.strip()) == (0, f"alert {alert.alert_id} is resolved")
    assert sent == []
    assert audit_actions(sqlite_url)[-1] == "alert.resolve"


def test_a_pooled_alert_publishes_nothing(sqlite_url: str, sent: list[Rebaseline]) -> None:
    alert = stored(sqlite_url, "pooled_sensitivity_claims_test")

    result = resolve(sqlite_url, alert)

    assert result.exit_code == 0, result.output
    assert sent == []
    assert status(sqlite_url, alert) is AlertStatus.RESOLVED


def test_an_open_claim_alert_is_refused_before_anything_is_published(
    sqlite_url: str, sent: list[Rebaseline]
) -> None:
    alert = stored(sqlite_url, "sensitivity_claims_test", acknowledged=False)

    result = resolve(sqlite_url, alert)

    assert result.exit_code == 1
    assert "still open: acknowledge it first" in result.output
    assert sent == []
    assert audit_actions(sqlite_url) == ["alert.raise"]


def test_a_resolution_too_long_for_the_decision_is_refused_in_one_line(
    sqlite_url: str, sent: list[Rebaseline]
) -> None:
    alert = stored(sqlite_url, "sensitivity_cusum")

    result = resolve(sqlite_url, alert, "x" * 2001)

    assert result.exit_code == 1
    assert "reason" in result.output and "Traceback" not in result.output
    assert sent == []
    assert status(sqlite_url, alert) is AlertStatus.ACKNOWLEDGED


def test_an_unreachable_broker_is_a_clear_error_and_nothing_is_recorded(sqlite_url: str) -> None:
    alert = stored(sqlite_url, "sensitivity_claims_test")

    result = resolve(sqlite_url, alert)

    assert result.exit_code == 1
    assert f"publishing to {UNREACHABLE} failed" in result.output
    assert "nothing was recorded" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, no exception escaped
    assert status(sqlite_url, alert) is AlertStatus.ACKNOWLEDGED
    assert audit_actions(sqlite_url) == ["alert.raise", "alert.acknowledge"]


def test_an_unacknowledged_publish_records_nothing(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unacknowledged(decision: Rebaseline, bootstrap: str, security: Any) -> None:
        raise KafkaTimeoutError("no acknowledgement in 30.0 s")

    monkeypatch.setattr(rebaseline, "publish_rebaseline", unacknowledged)
    alert = stored(sqlite_url, "sensitivity_cusum")

    result = resolve(sqlite_url, alert)

    assert result.exit_code == 1
    assert f"publishing to {UNREACHABLE} failed: KafkaTimeoutError" in result.output
    assert status(sqlite_url, alert) is AlertStatus.ACKNOWLEDGED


def test_a_failed_record_after_publishing_says_to_run_the_command_again(
    sqlite_url: str, sent: list[Rebaseline], monkeypatch: pytest.MonkeyPatch
) -> None:
    alert = stored(sqlite_url, "sensitivity_claims_test")

    def unavailable(self: EvidenceStore, decision: Rebaseline) -> None:
        raise EvidenceError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(EvidenceStore, "record_review", unavailable)
        failed = resolve(sqlite_url, alert)
    assert failed.exit_code == 1
    assert "recording the resolution failed: EvidenceError" in failed.output
    assert "run the command again" in failed.output
    assert status(sqlite_url, alert) is AlertStatus.ACKNOWLEDGED

    again = resolve(sqlite_url, alert)

    assert again.exit_code == 0, again.output
    assert [d.rebaseline_id for d in sent] == [review_id(alert.alert_id)] * 2
    assert status(sqlite_url, alert) is AlertStatus.RESOLVED
