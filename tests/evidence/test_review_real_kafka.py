"""``postmarket alerts resolve`` on the real broker: a claim-based alert's review decision on
pms.rebaselines.v1, keyed by its stream, exactly once; a drift alert's resolution, none."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from evidence_builders import make_alert, make_stream
from typer.testing import CliRunner

from evidence.lifecycle import AlertStatus
from evidence.rebaseline import review_id
from evidence.store import EvidenceStore
from launcher.cli import app
from postmarket import topics
from postmarket.contracts import Alert, Rebaseline, decode
from postmarket.topic_reader import read_to_end
from tests.integration.pipeline_io import read_topic

pytestmark = pytest.mark.integration

runner = CliRunner()
WHY = "reviewed 412 cases: a miscalibrated camera at the site, replaced on 2026-03-09"


def acknowledged(url: str, detector: str) -> Alert:
    """An acknowledged alert of ``detector`` on a stream no other test uses."""
    alert = make_alert(
        detector=detector, stream=make_stream(site_id=f"site-{uuid.uuid4().hex[:8]}")
    )
    with EvidenceStore(url) as store:
        store.record_alert(alert, actor="worker")
        store.acknowledge_alert(alert.alert_id, by="dr.li", note="reading the cases")
    return alert


def resolve(url: str, bootstrap: str, alert: Alert) -> Any:
    args = ["alerts", "resolve", str(alert.alert_id), "--resolution", WHY, "--by", "dr.li"]
    return runner.invoke(app, [*args, "--url", url, "--bootstrap", bootstrap])


def decisions_of(records: list[Any], alert: Alert) -> list[tuple[str, Rebaseline]]:
    decoded = [(r.key.decode(), decode(Rebaseline, r.value)) for r in records]
    return [(key, decision) for key, decision in decoded if decision.alert_id == alert.alert_id]


def test_a_claims_test_alert_publishes_exactly_one_review_decision(
    kafka_stack: Any, sqlite_url: str
) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    alert = acknowledged(sqlite_url, "sensitivity_claims_test")

    result = resolve(sqlite_url, bootstrap, alert)

    assert result.exit_code == 0, result.output
    done = lambda records: bool(decisions_of(records, alert))  # noqa: E731
    read_topic(bootstrap, topics.REBASELINES, done)
    ((key, decision),) = decisions_of(list(read_to_end(bootstrap, topics.REBASELINES)), alert)
    assert key == alert.stream.as_key()
    assert (decision.scope, decision.rebaseline_id) == ("review", review_id(alert.alert_id))
    assert (decision.stream, decision.decided_by, decision.reason) == (alert.stream, "dr.li", WHY)
    with EvidenceStore(sqlite_url) as store:
        assert store.alert(alert.alert_id).status is AlertStatus.RESOLVED
        assert store.audit_entries()[-1].action == "stream.review"


def test_a_drift_alert_publishes_no_decision(kafka_stack: Any, sqlite_url: str) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    drift = acknowledged(sqlite_url, "score_drift")
    claim = acknowledged(sqlite_url, "sensitivity_cusum")

    assert resolve(sqlite_url, bootstrap, drift).exit_code == 0
    assert resolve(sqlite_url, bootstrap, claim).exit_code == 0  # published after the drift's

    done = lambda records: bool(decisions_of(records, claim))  # noqa: E731
    records = read_topic(bootstrap, topics.REBASELINES, done)
    assert decisions_of(records, drift) == []
    with EvidenceStore(sqlite_url) as store:
        assert store.alert(drift.alert_id).status is AlertStatus.RESOLVED
