"""``postmarket alerts rebaseline`` refusals: checked before anything is published, and a
failed publish stores nothing."""

from __future__ import annotations

from typing import Any

import pytest
from evidence_builders import make_alert
from kafka.errors import KafkaTimeoutError
from typer.testing import CliRunner

from evidence import rebaseline
from evidence.lifecycle import AlertStatus
from evidence.store import EvidenceStore
from launcher.cli import app
from postmarket.contracts import Alert, Rebaseline

runner = CliRunner()
NO_BROKER = "127.0.0.1:1"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Rebaseline]:
    """Every decision the command would publish."""
    captured: list[Rebaseline] = []

    def fake_publish(decision: Rebaseline, bootstrap: str, security: Any) -> None:
        captured.append(decision)

    monkeypatch.setattr(rebaseline, "publish_rebaseline", fake_publish)
    return captured


def stored(url: str, detector: str, *, acknowledged: bool = True) -> Alert:
    alert = make_alert(detector=detector)
    with EvidenceStore(url) as store:
        store.record_alert(alert, actor="worker")
        if acknowledged:
            store.acknowledge_alert(alert.alert_id, by="dr.li", note="looking into it")
    return alert


def run(url: str, alert_id: str) -> Any:
    args = ["alerts", "rebaseline", alert_id, "--why", "accepted", "--by", "dr.li"]
    return runner.invoke(app, [*args, "--url", url, "--bootstrap", NO_BROKER])


def audit_actions(url: str) -> list[str]:
    with EvidenceStore(url) as store:
        return [entry.action for entry in store.audit_entries()]


def test_a_claim_alert_is_refused_naming_it_and_nothing_is_published_or_stored(
    sqlite_url: str, sent: list[Rebaseline]
) -> None:
    alert = stored(sqlite_url, "sensitivity_cusum")

    result = run(sqlite_url, str(alert.alert_id))

    assert result.exit_code == 1
    assert "sensitivity_cusum tests a registered claim" in result.output
    assert "claims are registered, not re-baselined" in result.output
    assert sent == []
    assert audit_actions(sqlite_url) == ["alert.raise", "alert.acknowledge"]


def test_an_open_drift_alert_is_refused_by_the_lifecycle(
    sqlite_url: str, sent: list[Rebaseline]
) -> None:
    alert = stored(sqlite_url, "score_drift", acknowledged=False)

    result = run(sqlite_url, str(alert.alert_id))

    assert result.exit_code == 1
    assert "still open: acknowledge it first" in result.output
    assert sent == []
    assert audit_actions(sqlite_url) == ["alert.raise"]


def test_an_unknown_alert_is_refused(sqlite_url: str, sent: list[Rebaseline]) -> None:
    result = run(sqlite_url, "5b0c6c1e-0000-4000-8000-000000000000")

    assert result.exit_code == 1
    assert "no alert 5b0c6c1e-0000-4000-8000-000000000000" in result.output
    assert sent == []


def test_a_failed_publish_stores_nothing(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def unacknowledged(decision: Rebaseline, bootstrap: str, security: Any) -> None:
        raise KafkaTimeoutError("no acknowledgement in 30.0 s")

    monkeypatch.setattr(rebaseline, "publish_rebaseline", unacknowledged)
    alert = stored(sqlite_url, "model_drift")

    result = run(sqlite_url, str(alert.alert_id))

    assert result.exit_code == 1
    assert f"publishing to {NO_BROKER} failed: KafkaTimeoutError" in result.output
    assert "nothing was recorded" in result.output
    with EvidenceStore(sqlite_url) as store:
        assert store.alert(alert.alert_id).status is AlertStatus.ACKNOWLEDGED
    assert audit_actions(sqlite_url) == ["alert.raise", "alert.acknowledge"]
