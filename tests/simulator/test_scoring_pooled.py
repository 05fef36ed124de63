"""Scoring the pooled per-version stage: its alert detects a version's regression, placed at
its last case time and compared with the per-site detection; on an untouched version it is a
false alarm there."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from postmarket.contracts import Alert, StreamKey
from simulator.scoring import FleetFacts, PipelineOutput, is_pooled, score_run

START = datetime(2026, 1, 5, tzinfo=UTC)
SITES = ("site-a", "site-b", "site-c")
REGRESSED = [f"dr|2.2.0.0|{site}|dr" for site in SITES]
OTHER_VERSION = "dr|2.1.0.3|site-a|dr"


def at(day: float) -> datetime:
    return START + timedelta(days=day)


def regression_truth() -> dict[str, Any]:
    affected = [
        {"stream_key": key, "first_case_ordinal": 1, "first_case_time": at(0).isoformat()}
        for key in REGRESSED
    ]
    injection = {
        "name": "regression",
        "kind": "version_rollout",
        "expected_signal": "performance_below_claims",
        "affected_streams": affected,
    }
    streams = [{"stream_key": key, "injections": ["regression"]} for key in REGRESSED]
    streams.append({"stream_key": OTHER_VERSION, "injections": []})
    return {"start": START.isoformat(), "streams": streams, "injections": [injection]}


def ten_a_day() -> FleetFacts:
    times = [at(i / 10) for i in range(300)]
    return FleetFacts({key: times for key in [*REGRESSED, OTHER_VERSION]}, {})


def make_alert(key: str, detector: str, last_day: float, sites: tuple[str, ...] = ()) -> Alert:
    evidence = {"charted_cases": 10} | {f"site:{site}": 5 for site in sites}
    return Alert(
        alert_id=uuid.uuid4(),
        stream=StreamKey.from_key(key),
        detector=detector,
        statistic=5.0,
        threshold=4.0,
        evidence=evidence,
        first_case_time=at(0),
        last_case_time=at(last_day),
        raised_at=at(last_day),
        severity="critical",
        message="test alert",
    )


def test_a_pooled_alert_detects_the_regression_before_the_per_site_one() -> None:
    pooled = make_alert("dr|2.2.0.0|all-sites|dr", "pooled_sensitivity_claims_test", 2.0, SITES)
    site = make_alert(REGRESSED[1], "sensitivity_cusum", 6.0)
    card = score_run(regression_truth(), ten_a_day(), PipelineOutput([site, pooled]))
    (change,) = card.changes
    assert is_pooled(pooled) and not is_pooled(site)
    assert change.detected and change.within_bound
    assert change.detectors == ("pooled_sensitivity_claims_test", "sensitivity_cusum")
    assert change.pooled_delay_days == pytest.approx(2.0)
    assert change.site_delay_days == pytest.approx(6.0)
    assert change.delay_days == pytest.approx(2.0)
    assert change.delay_cases == 21  # the busiest affected site's cases 1..21 (day 0..2.0)
    assert "63 affected cases across sites" in change.detail
    assert change.streams_detected == 3
    assert card.false_alarms == ()


def test_without_a_pooled_alert_only_the_per_site_delay_is_reported() -> None:
    site = make_alert(REGRESSED[0], "sensitivity_cusum", 6.0)
    (change,) = score_run(regression_truth(), ten_a_day(), PipelineOutput([site])).changes
    assert change.pooled_delay_days is None
    assert change.site_delay_days == change.delay_days == pytest.approx(6.0)


def test_a_pooled_alert_on_a_version_no_change_touched_is_a_false_alarm_there() -> None:
    pooled = make_alert("dr|2.1.0.3|all-sites|dr", "pooled_sensitivity_cusum", 3.0, ("site-a",))
    card = score_run(regression_truth(), ten_a_day(), PipelineOutput([pooled]))
    assert not card.changes[0].detected
    (alarm,) = card.false_alarms_on_untouched
    assert alarm.where == "dr|2.1.0.3|all-sites|dr"
