"""Scoring a run against its ground truth: detections, delays, bounds and false alarms."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from postmarket.contracts import Alert, DeadLetter, StreamKey
from simulator.fleet_records import fleet_records
from simulator.ground_truth import ground_truth
from simulator.scenario import Scenario
from simulator.scoring import (
    BOUNDS,
    SILENCE_AFTER,
    Bound,
    FleetFacts,
    PipelineOutput,
    fleet_facts,
    score_run,
    silences,
)
from tests.factories import make_prediction

START = datetime(2026, 1, 5, tzinfo=UTC)
DRIFTING = "dr-screen|2.1.0.3|site-a|referable_dr"
NEW_VERSION = "dr-screen|2.2.0.0|site-b|referable_dr"
QUIET = "dr-screen|2.1.0.3|site-c|referable_dr"


def at(day: float) -> datetime:
    return START + timedelta(days=day)


def stream_entry(key: str, ordinal: int, day: float) -> dict[str, Any]:
    return {
        "stream_key": key,
        "first_case_ordinal": ordinal,
        "first_case_time": at(day).isoformat(),
    }


def truth(*injections: dict[str, Any]) -> dict[str, Any]:
    touched: dict[str, list[str]] = {DRIFTING: [], NEW_VERSION: [], QUIET: []}
    for injection in injections:
        for stream in injection.get("affected_streams", []):
            touched.setdefault(stream["stream_key"], []).append(injection["name"])
    return {
        "start": START.isoformat(),
        "streams": [{"stream_key": k, "injections": v} for k, v in touched.items()],
        "injections": list(injections),
    }


def drift(ordinal: int = 101, day: float = 10.0) -> dict[str, Any]:
    return {
        "name": "new-camera",
        "kind": "scanner_change",
        "expected_signal": "performance_drift",
        "affected_streams": [stream_entry(DRIFTING, ordinal, day)],
    }


def unregistered() -> dict[str, Any]:
    return {
        "name": "unregistered-2.2",
        "kind": "version_rollout",
        "expected_signal": "unregistered_version",
        "affected_streams": [stream_entry(NEW_VERSION, 1, 5.0)],
    }


def daily_cases(days: int = 30) -> FleetFacts:
    """Ten cases a day per stream, in event-time order; the new version's from day 5."""
    times = [at(i / 10) for i in range(days * 10)]
    later = [time for time in times if time >= at(5)]
    return FleetFacts({DRIFTING: times, NEW_VERSION: later, QUIET: times}, {})


def alert(key: str, detector: str, seen: int | None, last_day: float | None = None) -> Alert:
    """An alert at case ``seen`` of a ten-a-day stream: its last charted case is that one."""
    evidence = {"charted_cases": 10} | ({"stream_predictions": seen} if seen else {})
    if last_day is None:
        last_day = (seen - 1) / 10 if seen else 12.0
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
        severity="warning",
        message="test alert",
    )


def test_a_stream_alert_after_the_change_detects_it_with_its_delay() -> None:
    card = score_run(
        truth(drift()), daily_cases(), PipelineOutput([alert(DRIFTING, "sensitivity_cusum", 150)])
    )
    (change,) = card.changes
    assert change.detected and change.detectors == ("sensitivity_cusum",)
    assert change.delay_cases == 50  # cases 101..150 of the stream
    assert change.delay_days == pytest.approx(4.9)  # case 150 is at day 14.9, case 101 at 10.0
    assert card.false_alarms == ()


def test_the_earliest_of_several_alerts_sets_the_delay() -> None:
    alerts = [alert(DRIFTING, "sensitivity_cusum", 180), alert(DRIFTING, "claims_test", 130)]
    (change,) = score_run(truth(drift()), daily_cases(), PipelineOutput(alerts)).changes
    assert change.delay_cases == 30
    assert change.detectors == ("claims_test", "sensitivity_cusum")


def test_an_alert_before_the_change_reached_its_stream_is_a_false_alarm() -> None:
    card = score_run(
        truth(drift()), daily_cases(), PipelineOutput([alert(DRIFTING, "sensitivity_cusum", 60)])
    )
    assert not card.changes[0].detected
    (alarm,) = card.false_alarms
    assert alarm.where == DRIFTING and not alarm.untouched


def test_an_alert_on_a_stream_no_change_touched_is_a_false_alarm_there() -> None:
    card = score_run(
        truth(drift()), daily_cases(), PipelineOutput([alert(QUIET, "specificity_cusum", 200)])
    )
    assert card.false_alarms_on_untouched[0].where == QUIET


def test_a_resent_alert_counts_once() -> None:
    once = alert(QUIET, "specificity_cusum", 200)
    card = score_run(truth(), daily_cases(), PipelineOutput([once, once]))
    assert card.alerts == 1 and len(card.false_alarms) == 1


def test_the_version_check_detects_an_unregistered_version_on_its_first_case() -> None:
    check = alert(NEW_VERSION, "unregistered_change", None, last_day=5.0)
    (change,) = score_run(truth(unregistered()), daily_cases(), PipelineOutput([check])).changes
    assert change.detected and change.within_bound
    assert (change.delay_cases, change.delay_days) == (1, 0.0)


def test_a_performance_alert_does_not_count_as_the_version_check() -> None:
    output = PipelineOutput([alert(NEW_VERSION, "sensitivity_cusum", 5)])
    card = score_run(truth(unregistered()), daily_cases(), output)
    assert not card.changes[0].detected
    assert len(card.false_alarms) == 1


def test_a_change_nothing_signalled_is_undetected_and_outside_its_bound() -> None:
    (change,) = score_run(truth(drift()), daily_cases(), PipelineOutput([])).changes
    assert not change.detected and not change.within_bound
    assert change.delay_cases is None


def test_a_detection_later_than_its_bound_is_detected_but_not_within_it() -> None:
    late = BOUNDS["performance_drift"].cases or 0
    output = PipelineOutput([alert(DRIFTING, "sensitivity_cusum", 100 + late + 1)])
    facts = daily_cases(days=200)
    (change,) = score_run(truth(drift()), facts, output).changes
    assert change.detected and not change.within_bound


def test_a_burst_is_detected_only_when_every_record_was_dead_lettered() -> None:
    burst = {
        "name": "burst",
        "kind": "malformed_burst",
        "expected_signal": "dead_letters",
        "affected_streams": [],
    }
    facts = FleetFacts({}, {"burst": frozenset({b"bad-1", b"bad-2"})})

    def letter(original: bytes) -> DeadLetter:
        return DeadLetter(
            event_id=uuid.uuid4(),
            source_topic="pms.predictions.v1",
            source_partition=0,
            source_offset=0,
            original=base64.b64encode(original),  # Base64Bytes decodes what it is given
            reason_code="not_json",
            reason="not JSON",
            received_at=at(1),
        )

    one = score_run(truth(burst), facts, PipelineOutput([], [letter(b"bad-1")]))
    both = score_run(truth(burst), facts, PipelineOutput([], [letter(b"bad-1"), letter(b"bad-2")]))
    assert not one.changes[0].detected
    assert both.changes[0].detected and both.changes[0].within_bound


def test_a_backfill_is_detected_when_its_cases_arrive_marked_retrospective() -> None:
    backfill = {
        "name": "backfill",
        "kind": "backfill",
        "expected_signal": "retrospective_data",
        "site": "site-a",
        "device": "dr-screen",
        "window": [at(-3).isoformat(), at(0).isoformat()],
        "cases": 2,
        "affected_streams": [stream_entry(DRIFTING, 1, -3)],
    }
    marked = [make_prediction(event_time=at(-2), study_design="retrospective") for _ in range(2)]
    unmarked = [make_prediction(event_time=at(-2)) for _ in range(2)]
    assert (
        score_run(truth(backfill), daily_cases(), PipelineOutput([], [], marked))
        .changes[0]
        .detected
    )
    assert (
        not score_run(truth(backfill), daily_cases(), PipelineOutput([], [], unmarked))
        .changes[0]
        .detected
    )


def hourly(site: str, until_day: float, from_day: float = 0.0) -> list[Any]:
    hours = int((until_day - from_day) * 24)
    return [make_prediction(site_id=site, event_time=at(from_day + h / 24)) for h in range(hours)]


def test_a_site_that_stops_sending_is_found_silent_a_day_after_its_last_case() -> None:
    silence = {
        "name": "silent",
        "kind": "site_silence",
        "expected_signal": "site_silent",
        "site": "site-f",
        "time": at(5).isoformat(),
        "affected_streams": [],
    }
    cases = hourly("site-f", 5.0) + hourly("site-a", 10.0)
    card = score_run(truth(silence), daily_cases(), PipelineOutput([], [], cases))
    (change,) = card.changes
    assert change.detected and change.within_bound
    # The last case came at 23:00 on day 4; the silence shows a day after it.
    assert SILENCE_AFTER == timedelta(days=1)
    assert change.delay_days == pytest.approx(23 / 24, abs=0.01)
    assert card.false_alarms == ()


def test_a_gap_at_a_site_nothing_silenced_is_a_false_alarm() -> None:
    cases = hourly("site-a", 3.0) + hourly("site-a", 10.0, from_day=5.0)
    (gap,) = silences(cases, START)
    assert gap.where == "site-a"
    card = score_run(truth(), daily_cases(), PipelineOutput([], [], cases))
    assert [a.detector for a in card.false_alarms] == ["site_silence"]


@pytest.mark.parametrize(
    ("bound", "cases", "days", "holds"),
    [
        (Bound(10, 2.0), 10, 2.0, True),
        (Bound(10, 2.0), 11, 1.0, False),
        (Bound(10, 2.0), 5, 2.5, False),
        (Bound(None, 0.0), None, 0.0, True),
        (Bound(10, 2.0), None, None, False),
    ],
)
def test_a_bound_holds_only_within_both_its_cases_and_its_days(
    bound: Bound, cases: int | None, days: float | None, holds: bool
) -> None:
    assert bound.holds(cases, days) is holds


def test_fleet_facts_list_each_stream_in_arrival_order_and_each_burst(
    small_scenario: Scenario,
) -> None:
    records = fleet_records(small_scenario)
    facts = fleet_facts(records)
    document = ground_truth(small_scenario, records)
    assert {s["stream_key"]: s["cases"] for s in document["streams"]} == {
        key: len(times) for key, times in facts.stream_case_times.items()
    }
    (burst,) = [i for i in document["injections"] if i["kind"] == "malformed_burst"]
    assert len(facts.malformed[burst["name"]]) == burst["count"]
