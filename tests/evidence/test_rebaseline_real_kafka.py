"""``postmarket alerts rebaseline`` on the real broker: the decision on pms.rebaselines.v1,
keyed by its stream, then recorded in the evidence store; a re-run publishes the same id."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from evidence_builders import make_alert, make_stream
from typer.testing import CliRunner

from evidence.lifecycle import AlertStatus
from evidence.rebaseline import rebaseline_id
from evidence.store import EvidenceError, EvidenceStore
from launcher.cli import app
from postmarket import topics
from postmarket.contracts import Alert, Rebaseline, decode
from postmarket.topic_reader import read_to_end
from tests.integration.pipeline_io import read_topic

pytestmark = pytest.mark.integration

runner = CliRunner()
WHY = "new CT scanner at the site validated against reference reads"


def acknowledged_drift(url: str) -> Alert:
    """An acknowledged kvp_band_drift alert on a stream no other test uses."""
    alert = make_alert(
        detector="kvp_band_drift", stream=make_stream(site_id=f"site-{uuid.uuid4().hex[:8]}")
    )
    with EvidenceStore(url) as store:
        store.record_alert(alert, actor="worker")
        store.acknowledge_alert(alert.alert_id, by="dr.li", note="scanner change at the site?")
    return alert


def rebaseline(url: str, bootstrap: str, alert: Alert) -> Any:
    args = ["alerts", "rebaseline", str(alert.alert_id), "--why", WHY, "--by", "dr.li"]
    return runner.invoke(app, [*args, "--url", url, "--bootstrap", bootstrap])


def decisions_of(records: list[Any], alert: Alert) -> list[tuple[str, Rebaseline]]:
    decoded = [(r.key.decode(), decode(Rebaseline, r.value)) for r in records]
    return [(key, decision) for key, decision in decoded if decision.alert_id == alert.alert_id]


def published(bootstrap: str, alert: Alert, at_least: int) -> list[tuple[str, Rebaseline]]:
    done = lambda records: len(decisions_of(records, alert)) >= at_least  # noqa: E731
    return decisions_of(read_topic(bootstrap, topics.REBASELINES, done), alert)


def test_the_decision_is_published_keyed_by_stream_then_recorded(
    kafka_stack: Any, sqlite_url: str
) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    alert = acknowledged_drift(sqlite_url)

    result = rebaseline(sqlite_url, bootstrap, alert)

    assert result.exit_code == 0, result.output
    assert f"re-baselined stream {alert.stream.as_key()} after its kvp_band_drift" in result.output
    assert "next predictions" in result.output
    ((key, decision),) = published(bootstrap, alert, 1)
    assert key == alert.stream.as_key()
    assert decision.rebaseline_id == rebaseline_id(alert.alert_id)
    assert (decision.stream, decision.decided_by, decision.reason) == (alert.stream, "dr.li", WHY)
    with EvidenceStore(sqlite_url) as store:
        assert store.alert(alert.alert_id).status is AlertStatus.RESOLVED
        assert store.audit_entries()[-1].action == "stream.rebaseline"
        assert store.verify_audit_chain().problem is None


def test_after_a_failed_record_a_second_run_publishes_the_same_id(
    kafka_stack: Any, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    alert = acknowledged_drift(sqlite_url)

    def unavailable(self: EvidenceStore, decision: Rebaseline) -> None:
        raise EvidenceError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(EvidenceStore, "record_rebaseline", unavailable)
        failed = rebaseline(sqlite_url, bootstrap, alert)
    assert failed.exit_code == 1
    assert "recording it failed" in failed.output
    assert "run the command again" in failed.output
    with EvidenceStore(sqlite_url) as store:
        assert store.alert(alert.alert_id).status is AlertStatus.ACKNOWLEDGED

    again = rebaseline(sqlite_url, bootstrap, alert)

    assert again.exit_code == 0, again.output
    first, second = published(bootstrap, alert, 2)
    assert first[0] == second[0] == alert.stream.as_key()
    assert first[1].rebaseline_id == second[1].rebaseline_id == rebaseline_id(alert.alert_id)
    with EvidenceStore(sqlite_url) as store:
        assert store.alert(alert.alert_id).status is AlertStatus.RESOLVED

    resolved = rebaseline(sqlite_url, bootstrap, alert)  # the lifecycle ends at resolved

    assert resolved.exit_code == 1
    assert "already resolved" in resolved.output
    records = list(read_to_end(bootstrap, topics.REBASELINES))
    assert len(decisions_of(records, alert)) == 2
